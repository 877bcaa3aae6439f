"""What every operator command shares: exit codes, the service's settings (refused outside
development while they hold the local defaults), confirmation of destructive commands."""

from __future__ import annotations

import asyncio
import functools
import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import click
import structlog
from pydantic import ValidationError

from misp_platform.config import DEVELOPMENT, ServiceSettings
from misp_platform.logging import configure_logging
from misp_platform.outbox import limit_message_bytes
from misp_platform.tracing import configure_tracing

if TYPE_CHECKING:
    from misp_platform.service import ServiceSpec

OK, FAILED, USAGE = 0, 1, 2
FAILED_MEANS = ("the operation failed, found a problem, or was refused (not confirmed, or the "
                "configuration is missing outside development)")
P = ParamSpec("P")


def epilog(failed: str = "", *more: str) -> str:
    """The exit codes for a command's help: what 1 also means for it (`failed`), and its own
    further codes (`more`, as `"3  what it means"`)."""
    lines = ["0  success", f"1  {failed + '; ' if failed else ''}{FAILED_MEANS}",
             "2  usage error (unknown command or option, missing or bad value)", *more]
    wrapped = (textwrap.fill(line, width=76, initial_indent="  ", subsequent_indent=" " * 5)
               for line in lines)
    return "\b\nExit codes:\n" + "\n".join(wrapped)


@dataclass
class CliContext:
    """The click context object of one service's commands."""

    service: str
    load_settings: Callable[[], ServiceSettings]
    spec: ServiceSpec | None = None
    settings: ServiceSettings | None = None
    logging_configured: bool = False

    @classmethod
    def of(cls, settings: ServiceSettings, spec: ServiceSpec | None = None) -> CliContext:
        """A context with settings already made (tests)."""
        return cls(service=settings.service, load_settings=lambda: settings, spec=spec,
                   settings=settings)


def require(settings: ServiceSettings, *needs: str) -> None:
    """Refuse (exit 1) outside development while what the command needs (DATABASE, KAFKA)
    still holds the built-in local defaults, naming the variables to set."""
    if settings.environment.strip().lower() == DEVELOPMENT:
        return
    missing = settings.unconfigured(needs)
    if missing:
        raise click.ClickException(
            f"refusing to use the built-in local defaults in the {settings.environment!r} "
            f"environment (MISP_ENVIRONMENT): set {' and '.join(missing)}")


def settings_for(ctx: click.Context, *needs: str) -> ServiceSettings:
    """The service's settings (loaded once, logging configured), checked for `needs`."""
    obj = ctx.find_object(CliContext)
    if obj is None:
        raise click.UsageError("no service context: run this as `python -m <service> ...`")
    if obj.settings is None:
        try:
            obj.settings = obj.load_settings()
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise click.ClickException(f"invalid configuration: {problems}") from exc
    if not obj.logging_configured:  # on stderr: stdout holds what the command prints
        configure_logging(obj.service, obj.settings.log_format, obj.settings.log_level)
        limit_message_bytes(obj.settings.max_message_bytes)
        obj.logging_configured = True
    role = ctx
    while role.parent is not None and role.parent.parent is not None:
        role = role.parent
    structlog.contextvars.bind_contextvars(role=role.info_name)
    configure_tracing(obj.service, role.info_name)  # off unless OTEL_EXPORTER_OTLP_* asks
    require(obj.settings, *needs)
    return obj.settings


def with_settings(*needs: str) -> Callable[[Callable[Concatenate[Any, P], int]],
                                           Callable[P, None]]:
    """Call the command with the service's settings first; its result is the exit code."""

    def wrap(fn: Callable[Concatenate[Any, P], int]) -> Callable[P, None]:
        @functools.wraps(fn)
        def command(*args: P.args, **kwargs: P.kwargs) -> None:
            ctx = click.get_current_context()
            ctx.exit(fn(settings_for(ctx, *needs), *args, **kwargs))

        return command

    return wrap


class PartCommand(click.Command):
    """A program's command that `python -m <service> all --with '<command> [ARGS]'` can also run
    inside its process: `part(settings, **params)` (the command's parsed parameters) gives a
    coroutine function that runs the program until the event it is given is set."""

    def __init__(self, *args: Any,
                 part: Callable[..., Callable[[asyncio.Event], Awaitable[None]]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.part = part


yes_option = click.option(
    "--yes", "-y", is_flag=True,
    help="Do it without asking (required when stdin is not a terminal).")
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Say what would be done, and change nothing.")


def confirm(question: str, *, yes: bool) -> None:
    """Go on with `--yes` or an operator's yes on a terminal; otherwise exit 1, never waiting
    on a stdin that is not a terminal."""
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise click.ClickException(
            f"refusing without confirmation: {question} Pass --yes to do it non-interactively.")
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("not confirmed: nothing was changed")
