"""Contracts shared by every service: the event envelope, event and command models, topics, settings."""
