"""Adapters of the mailer service to the outside world (database, Kafka, ...)."""
