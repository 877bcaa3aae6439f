"""Adapters of the orgs service to the outside world (database, Kafka, ...)."""
