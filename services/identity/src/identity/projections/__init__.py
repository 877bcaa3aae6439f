"""Read models of the identity service, kept in its own database."""
