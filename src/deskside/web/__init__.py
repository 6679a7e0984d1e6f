"""The web UI: login, sidebar preview, setup and the insights dashboard under ``/ui/``."""
