"""Conversations in: the Help Scout connection, the webhook inbox, the store they fill."""
