"""Alembic environment of the jobs service."""

from misp_platform.migrations import run_env

run_env()
