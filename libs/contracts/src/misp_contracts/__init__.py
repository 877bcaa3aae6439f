"""Contracts shared by every service: envelope, event and command models, topics, settings."""
