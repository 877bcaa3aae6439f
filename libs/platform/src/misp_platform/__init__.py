"""What every service shares: event store, outbox relay, Kafka consumers, MISP shapes, auth."""
