"""The composition root of the identity service: the one place that wires real adapters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import structlog
from fastapi import FastAPI

from identity.adapters import store
from identity.adapters.view_cache import view_cache
from identity.api import create_routers
from identity.consumer import handlers, on_consumer_start, principal_handlers, topics
from identity.handlers.admin_password import password_path, set_temporary_password
from identity.handlers.first_run import key_path, rotate_admin_key
from identity.handlers.jobs import job_handlers
from identity.settings import IdentitySettings
from misp_platform.app import LifespanHook
from misp_platform.app import create_app as create_platform_app
from misp_platform.cli_support import FAILED, OK, confirm, epilog, with_settings, yes_option
from misp_platform.config import DATABASE, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.server_settings import setting
from misp_platform.service import ServiceSpec
from misp_platform.worker_command import worker_command

log = structlog.get_logger(__name__)
AUTH_SETTINGS_REFRESH_S = 5.0


@asynccontextmanager
async def follow_auth_settings(app: FastAPI) -> AsyncIterator[None]:
    """Keep `Security.log_each_individual_auth_fail` (read by the platform's auth dependency)
    in step with the setting identity's consumer records."""

    async def refresh() -> None:
        while True:
            try:
                async with app.state.engine.connect() as conn:
                    app.state.log_each_individual_auth_fail = bool(await setting(
                        conn, "Security.log_each_individual_auth_fail"))
            except Exception:  # the database restarting: keep the last value
                log.debug("auth_settings.refresh_failed", exc_info=True)
            await asyncio.sleep(AUTH_SETTINGS_REFRESH_S)

    task = asyncio.create_task(refresh())
    try:
        yield
    finally:
        task.cancel()


async def diagnose_sessions(app: FastAPI) -> dict[str, Any]:
    """MISP's diagnostics counter of expired sessions (the purge job removes them:
    `purge_expired_sessions`, queued by `servers/purgeSessions`), beside the active ones."""
    async with app.state.engine.connect() as conn:
        active, expired = await store.session_counts(conn, datetime.now(UTC))
    return {"active": active, "expired": expired}


def create_app(settings: ServiceSettings, *, lifespan_hooks: Sequence[LifespanHook] = (),
               **kwargs: Any) -> FastAPI:
    hooks = [follow_auth_settings, view_cache, *lifespan_hooks]
    kwargs.setdefault("diagnostics", {"sessions": diagnose_sessions})
    return create_platform_app(settings, routers=create_routers(), lifespan_hooks=hooks,
                               **kwargs)


@click.command(name="admin-key", epilog=epilog("the site admin does not exist yet"))
@yes_option
@with_settings(DATABASE)
def admin_key_command(settings: ServiceSettings, yes: bool) -> int:
    """Rotate the site admin's authkey.

    Prints the new key and writes it to <MISP_STATE_DIR>/admin.authkey; the admin's previous
    key is deleted (clients using it are refused): asks for confirmation.
    """
    confirm("Replace the site admin's authkey (the current one stops working)?", yes=yes)

    async def run() -> str:
        engine = engine_for(settings)
        try:
            return await rotate_admin_key(engine, pepper=settings.pepper.get_secret_value(),
                                          state_dir=settings.state_dir)
        finally:
            await engine.dispose()

    try:
        raw = asyncio.run(run())
    except LookupError as exc:
        click.echo(f"admin-key: {exc}", err=True)
        return FAILED
    click.echo(raw)
    click.echo(f"(written to {key_path(settings.state_dir)})", err=True)
    return OK


@click.command(name="admin-password", epilog=epilog("the site admin does not exist yet"))
@yes_option
@click.option("--first", is_flag=True,
              help="Only if the site admin has no password yet (what `make up` runs).")
@with_settings(DATABASE)
def admin_password_command(settings: ServiceSettings, yes: bool, first: bool) -> int:
    """Give the site admin a temporary password, to be changed at the first login.

    Prints it and writes it to <MISP_STATE_DIR>/admin.password; the admin's current password, if
    any, stops working: asks for confirmation (not with --first, which changes no password).
    """
    if not first:
        confirm("Replace the site admin's password with a temporary one?", yes=yes)

    async def run() -> str | None:
        engine = engine_for(settings)
        try:
            return await set_temporary_password(engine, state_dir=settings.state_dir,
                                                only_first=first)
        finally:
            await engine.dispose()

    try:
        password = asyncio.run(run())
    except LookupError as exc:
        click.echo(f"admin-password: {exc}", err=True)
        return FAILED
    if password is None:
        click.echo("admin-password: the site admin has a password already", err=True)
        return OK
    click.echo(password)
    click.echo(f"(written to {password_path(settings.state_dir)}; to be changed at the first "
               "login)", err=True)
    return OK


spec = ServiceSpec(
    name="identity",
    settings=IdentitySettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    principal_handlers=principal_handlers,
    topics=topics,
    on_consumer_start=on_consumer_start,
    extra_commands=[admin_key_command, admin_password_command,
                    worker_command("identity", job_handlers)],
)
