"""Read models of the mailer service, kept in its own database."""
