"""Alembic environment of the settings service."""

from misp_platform.migrations import run_env

run_env()
