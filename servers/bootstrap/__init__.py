"""The Bootstrap service: signed, prioritized lists of live Operations services."""
