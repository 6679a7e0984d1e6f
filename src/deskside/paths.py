"""Where deskside keeps its own files on this machine (the demo's database, the default insights
store): one place that the demo, the command line and the insights store all read."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["data_dir"]


def data_dir() -> Path:
    """Where deskside keeps its files: ``$DESKSIDE_DATA_DIR``, else the user data directory."""
    configured = os.environ.get("DESKSIDE_DATA_DIR")
    path = Path(configured) if configured else Path(platformdirs.user_data_dir("deskside"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: it holds the stores
    return path
