"""`python -m <service> dlq list|show|replay`: the operator's commands for the service's
dead-letter topic (`misp.<service>.dlq.v1`)."""

from __future__ import annotations

import asyncio
import json

import click

from misp_contracts.topics import dlq_topic
from misp_platform.cli_support import (
    FAILED,
    OK,
    CliContext,
    confirm,
    dry_run_option,
    epilog,
    with_settings,
    yes_option,
)
from misp_platform.config import DATABASE, KAFKA, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.dlq import DeadLetter, planned, read_dead_letters, replay
from misp_platform.progress import progress


def _spec_of(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    assert obj is not None and obj.spec is not None
    return obj


@click.group(name="dlq", epilog=epilog())
def dlq_group() -> None:
    """Inspect and replay the service's dead-letter topic.

    A message its consumer could not decode or apply after retries is there, with the error in
    its `dlq_*` headers.
    """


@dlq_group.command(name="list", epilog=epilog())
@with_settings(KAFKA)
def list_command(settings: ServiceSettings) -> int:
    """Print one JSON line per dead letter, then their count."""
    service = _spec_of(click.get_current_context()).service
    letters = asyncio.run(read_dead_letters(settings.kafka_bootstrap_servers, service))
    for letter in letters:
        click.echo(json.dumps(letter.summary()))
    click.echo(f"{len(letters)} dead letter(s) in {dlq_topic(service)}")
    return OK


@dlq_group.command(name="show", epilog=epilog("no dead letter at OFFSET"))
@click.argument("offset", type=int)
@with_settings(KAFKA)
def show_command(settings: ServiceSettings, offset: int) -> int:
    """Print the dead letter at OFFSET as JSON.

    OFFSET is its offset in the topic, as `dlq list` shows it; everything is printed: summary,
    key, headers and value.
    """
    service = _spec_of(click.get_current_context()).service
    letters = asyncio.run(read_dead_letters(settings.kafka_bootstrap_servers, service))
    shown = next((letter for letter in letters if letter.offset == offset), None)
    if shown is None:
        click.echo(f"no dead letter at offset {offset}", err=True)
        return FAILED
    click.echo(json.dumps({**shown.summary(), "key": shown.key, "headers": shown.headers,
                           "value": shown.value.decode("utf-8", "replace")}, indent=2))
    return OK


@dlq_group.command(name="replay", epilog=epilog(
    "an OFFSET with no dead letter, or a replay that failed"))
@click.argument("offsets", metavar="[OFFSET]...", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True,
              help="Replay every dead letter of the topic (asks for confirmation).")
@yes_option
@dry_run_option
@with_settings(KAFKA, DATABASE)
def replay_command(settings: ServiceSettings, offsets: tuple[int, ...], all_: bool, yes: bool,
                   dry_run: bool) -> int:
    """Run dead letters through the service's handlers again.

    Give the OFFSETs to replay (from `dlq list`), or --all. Each letter is applied once, in
    one transaction with its processed mark, however often it is replayed; one JSON line per
    letter says what happened (applied, already-applied, no-handler, failed: ...).
    """
    if bool(offsets) == all_:
        raise click.UsageError("give the OFFSETs to replay, or --all (not both)")
    obj = _spec_of(click.get_current_context())
    letters = asyncio.run(read_dead_letters(settings.kafka_bootstrap_servers, obj.service))
    by_offset = {letter.offset: letter for letter in letters}
    missing = [o for o in offsets if o not in by_offset]
    chosen = letters if all_ else [by_offset[o] for o in dict.fromkeys(offsets) if o in by_offset]
    for offset in missing:
        click.echo(json.dumps({"offset": offset, "outcome": "not-found"}))
    if all_ and not dry_run and chosen:
        confirm(f"Replay all {len(chosen)} dead letter(s) of {dlq_topic(obj.service)}?",
                yes=yes)
    failures = asyncio.run(_replay_all(obj, settings, chosen, dry_run=dry_run))
    if all_ and not chosen:
        click.echo(f"no dead letter in {dlq_topic(obj.service)}")
    return FAILED if failures or missing else OK


async def _replay_all(obj: CliContext, settings: ServiceSettings, chosen: list[DeadLetter], *,
                      dry_run: bool) -> int:
    assert obj.spec is not None
    engine = engine_for(settings)
    failures = 0
    try:
        with progress("replaying dead letters", len(chosen)) as bar:
            for letter in chosen:
                # The group that dead-lettered it, with that group's handlers.
                group = letter.headers.get("dlq_consumer") or settings.main_group
                handlers = obj.spec.single_handlers(settings, group)
                try:
                    outcome = await (planned if dry_run else replay)(engine, group, handlers,
                                                                     letter)
                except Exception as exc:
                    outcome = f"failed: {type(exc).__name__}: {exc}"
                    failures += 1
                click.echo(json.dumps({"offset": letter.offset, "outcome": outcome}))
                bar.advance()
    finally:
        await engine.dispose()
    return failures
