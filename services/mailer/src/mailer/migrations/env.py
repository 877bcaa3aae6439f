"""Alembic environment of the mailer service."""

from misp_platform.migrations import run_env

run_env()
