"""The demo's second service: a read model of the orders, filled from the orders demo's
events through an inbox (``settings_downstream``, docs/inbox.md)."""
