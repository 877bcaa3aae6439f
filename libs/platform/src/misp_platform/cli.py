"""`python -m <service> <command>`: one entry point for every role and operator command of a
service (click), `main(spec, argv)`; the service adds its own commands (`spec.extra_commands`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click

from misp_platform import roles
from misp_platform.cli_support import FAILED, OK, CliContext, epilog, with_settings
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

    for command in (api_command, relay_command, consume_command, migrate_command, dlq_group,
                    outbox_group, *spec.extra_commands):
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
