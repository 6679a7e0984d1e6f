"""deskside: the customer-context endpoint every helpdesk sidebar calls."""

__version__ = "0.1.0"
