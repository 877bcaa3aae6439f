"""The mailer service: outgoing mail to users and the instance GnuPG key."""
