"""Adapters of the jobs service to the outside world (database, Kafka, ...)."""
