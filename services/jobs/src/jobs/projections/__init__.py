"""Read models of the jobs service, kept in its own database."""
