"""Alembic environment of the audit service."""

from misp_platform.migrations import run_env

run_env()
