"""Renderers: each turns the neutral :class:`~deskside.card.Sidebar` into one output format."""
