"""Read models of the settings service, kept in its own database."""
