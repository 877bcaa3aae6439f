"""Adapters of the identity service to the outside world (database, Kafka, ...)."""
