"""Alembic environment of the identity service."""

from misp_platform.migrations import run_env

run_env()
