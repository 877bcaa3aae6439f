"""The identity service: users, roles, authkeys, passwords, logins and sessions."""
