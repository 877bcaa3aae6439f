"""Read models of the audit service, kept in its own database."""
