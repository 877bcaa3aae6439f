"""Adapters of the settings service to the outside world (database, Kafka, ...)."""
