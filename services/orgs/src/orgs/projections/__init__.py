"""Read models of the orgs service, kept in its own database."""
