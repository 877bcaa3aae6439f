"""Adapters of the audit service to the outside world (database, Kafka, ...)."""
