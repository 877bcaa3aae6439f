"""`python -m <service> <command>`: one entry point for every role and operator command of a
service (click), `main(spec, argv)`; the service adds its own commands (`spec.extra_commands`)."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence

import click

from misp_platform import roles
from misp_platform.cli_support import (
    FAILED,
    OK,
    CliContext,
    PartCommand,
    epilog,
    with_settings,
)
from misp_platform.config import DATABASE, KAFKA, ServiceSettings
from misp_platform.dlq_commands import dlq_group
from misp_platform.outbox_commands import outbox_group
from misp_platform.service import ServiceSpec

HELP = """Run a role of the {name} service, or one of its operator commands.

Every command reads the service's settings from the environment (`{prefix}*`, and `MISP_*` for
what the deployment shares). Outside development (MISP_ENVIRONMENT), a command refuses to run
while the database or Kafka it needs is still the built-in local address.
"""


def _spec(ctx: click.Context) -> ServiceSpec:
    obj = ctx.find_object(CliContext)
    assert obj is not None and obj.spec is not None
    return obj.spec


@click.command(name="api", epilog=epilog())
@with_settings(DATABASE, KAFKA)
def api_command(settings: ServiceSettings) -> int:
    """Serve the HTTP API.

    On <SERVICE>_HTTP_HOST and <SERVICE>_HTTP_PORT, until SIGTERM or SIGINT.
    """
    roles.run_api(_spec(click.get_current_context()), settings)
    return OK


@click.command(name="relay", epilog=epilog())
@with_settings(DATABASE, KAFKA)
def relay_command(settings: ServiceSettings) -> int:
    """Publish the outbox to Kafka, until SIGTERM or SIGINT."""
    asyncio.run(roles.run_relay(_spec(click.get_current_context()), settings))
    return OK


@click.command(name="consume", epilog=epilog())
@with_settings(DATABASE, KAFKA)
def consume_command(settings: ServiceSettings) -> int:
    """Run the service's Kafka consumers, until SIGTERM or SIGINT."""
    asyncio.run(roles.run_consumer(_spec(click.get_current_context()), settings))
    return OK


# The programs that stay processes of their own, and why (the other commands that cannot join
# `all` are operator commands, not programs).
OWN_PROCESS = {"detect": "the audit's faust detector runs its own event loop: run it as a "
                         "process of its own (`python -m audit detect`)"}


def parse_with(ctx: click.Context, _param: click.Parameter,
               values: tuple[str, ...]) -> dict[str, tuple[PartCommand, dict[str, object]]]:
    """Each `--with` value (a program's command and its arguments, as one string) checked
    against the service's commands and that command's own options: by name, the command and
    its parsed parameters."""
    spec = _spec(ctx)
    parts = {c.name: c for c in spec.extra_commands if isinstance(c, PartCommand) and c.name}
    known = ", ".join(parts) or "none"
    chosen: dict[str, tuple[PartCommand, dict[str, object]]] = {}
    for value in values:
        name, *args = shlex.split(value) or [""]
        if name in OWN_PROCESS:
            raise click.BadParameter(f"{name!r} cannot run inside `all`: {OWN_PROCESS[name]}")
        if name not in parts:
            raise click.BadParameter(f"{name!r} is not a program of the {spec.name} service "
                                     f"that `all` can run (those it can: {known})")
        if name in chosen:
            raise click.BadParameter(f"{name!r} is given twice: give its arguments once")
        command = parts[name]
        try:
            with command.make_context(name, list(args), parent=ctx) as sub:
                chosen[name] = (command, dict(sub.params))
        except click.UsageError as exc:
            raise click.BadParameter(f"{value!r}: {exc.format_message()}") from exc
    return chosen


@click.command(name="all", epilog=epilog("a part failed, or ended by itself"))
@click.option("--with", "others", multiple=True, metavar="'COMMAND [ARGS]...'",
              callback=parse_with,
              help="Also run this program of the service in the process: a command and its "
                   "arguments as one string, e.g. --with 'worker default' (repeatable; the "
                   "service's `worker`, and the jobs service's `scheduler`).")
@with_settings(DATABASE, KAFKA)
def all_command(settings: ServiceSettings,
                others: dict[str, tuple[PartCommand, dict[str, object]]]) -> int:
    """Run the API, the relay and the consumers in one process, until SIGTERM or SIGINT.

    For small installs: one process and one event loop instead of one process per role. The API
    serves on <SERVICE>_HTTP_HOST and <SERVICE>_HTTP_PORT, and its /metrics holds every part's
    metrics (no ops port). The relay takes the outbox lock or waits as a standby; the consumers
    join the service's groups as `consume` does. A part failing, or ending by itself (a worker
    asked to stop), stops the others and the process (exit 1), for the supervisor to start it
    again. SIGTERM or SIGINT stops every part: the relay releases its lock, the consumers leave
    their groups and the API drains its connections.
    """
    parts = {name: command.part(settings, **params) for name, (command, params) in others.items()}
    try:
        asyncio.run(roles.run_all(_spec(click.get_current_context()), settings, parts))
    except roles.PartFailedError as exc:
        raise click.ClickException(str(exc)) from exc
    return OK


@click.command(name="migrate", epilog=epilog())
@with_settings(DATABASE)
def migrate_command(settings: ServiceSettings) -> int:
    """Upgrade the service's database to the newest migration."""
    from misp_platform.migrations import upgrade

    upgrade(_spec(click.get_current_context()).migrations_dir, settings.database_url)
    return OK


def build_cli(spec: ServiceSpec) -> click.Group:
    """The service's command group: the platform's roles, `dlq`, `outbox`, then the service's
    own."""
    prefix = f"{spec.name.upper()}_"

    @click.group(name=spec.name, help=HELP.format(name=spec.name, prefix=prefix),
                 epilog=epilog(), context_settings={"help_option_names": ["-h", "--help"]})
    @click.pass_context
    def group(ctx: click.Context) -> None:
        if not isinstance(ctx.obj, CliContext):
            ctx.obj = CliContext(service=spec.name, load_settings=spec.settings, spec=spec)

    for command in (api_command, relay_command, consume_command, all_command, migrate_command,
                    dlq_group, outbox_group, *spec.extra_commands):
        group.add_command(command)
    return group


def main(spec: ServiceSpec, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process's arguments), run the command, return its exit code."""
    try:
        result = build_cli(spec).main(args=list(argv) if argv is not None else None,
                                      prog_name=f"python -m {spec.name}",
                                      standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return FAILED
    return result if isinstance(result, int) else OK
