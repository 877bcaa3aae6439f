"""Alembic environment of the orgs service."""

from misp_platform.migrations import run_env

run_env()
