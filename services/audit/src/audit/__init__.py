"""The audit service: the searchable audit log, a projection of every other service's events."""
