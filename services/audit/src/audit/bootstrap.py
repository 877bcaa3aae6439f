"""The composition root of the audit service: the one place that wires real adapters."""

import copy
import functools
from pathlib import Path
from typing import Any

import click
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.api.routes import misp_router, router
from audit.consumer import AuditConsumer, handlers, on_consumer_start, replay_handlers
from audit.detector import detect_command
from audit.handlers.commands import COMMANDS
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_platform.app import create_app as create_platform_app
from misp_platform.cli_support import settings_for
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec

# The commands that sign checkpoints (beside `consume`): in production they refuse to start
# without the deployment's signing key rather than generate one of their own.
SIGNING_COMMANDS = frozenset({"worker", "checkpoint", "prune", "rebuild"})


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=[misp_router, router])


def require_signing_key(settings: ServiceSettings) -> None:
    """Stop (exit 1, the message naming AUDIT_SIGNING_KEY_PATH) when this process may not sign."""
    assert isinstance(settings, AuditSettings)
    problem = settings.signing_key_problem()
    if problem:
        raise click.ClickException(f"refusing to start: {problem}")


async def start_consumer(settings: ServiceSettings, engine: AsyncEngine) -> None:
    require_signing_key(settings)
    await on_consumer_start(settings, engine)


def requiring_signing_key(command: click.Command) -> click.Command:
    """`command`, checking the signing key before it runs."""
    callback = command.callback
    assert callback is not None

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        require_signing_key(settings_for(click.get_current_context()))
        return callback(*args, **kwargs)

    checked_command = copy.copy(command)
    checked_command.callback = checked
    return checked_command


spec = ServiceSpec(
    name="audit",
    settings=AuditSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    topic_pattern=TOPIC_PATTERN,
    consumer_class=AuditConsumer,
    replay_handlers=replay_handlers,
    on_consumer_start=start_consumer,
    extra_commands=[*(requiring_signing_key(c) if c.name in SIGNING_COMMANDS else c
                      for c in COMMANDS), detect_command],
)
