"""The Operations service: endpoint registration, and the node lease."""
