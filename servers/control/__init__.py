"""The Control tool (``python -m servers.control``) and the actions it shares."""
