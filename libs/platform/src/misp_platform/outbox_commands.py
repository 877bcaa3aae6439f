"""`python -m <service> outbox list|retry|drop`: the operator's commands for the messages the
relay parked because Kafka refused them for good (too large, not authorised)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_platform.cli_support import (
    FAILED,
    OK,
    confirm,
    dry_run_option,
    epilog,
    with_settings,
    yes_option,
)
from misp_platform.config import DATABASE, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.parked import ParkedMessage, drop_parked, list_parked, retry_parked

T = TypeVar("T")


def _run(settings: ServiceSettings, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work` in one transaction on the service's database."""

    async def go() -> T:
        engine = engine_for(settings)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _chosen(positions: tuple[int, ...], all_: bool,
            parked: Sequence[ParkedMessage]) -> tuple[list[int] | None, list[int]]:
    """(the positions to act on, None for all; those given that are not parked)."""
    if bool(positions) == all_:
        raise click.UsageError("give the POSITIONs (from `outbox list`), or --all (not both)")
    if all_:
        return None, []
    known = {m.position for m in parked}
    return ([p for p in dict.fromkeys(positions) if p in known],
            [p for p in positions if p not in known])


def _act(settings: ServiceSettings, positions: tuple[int, ...], all_: bool, *, dry_run: bool,
         verb: str, confirm_question: str | None, yes: bool,
         action: Callable[[AsyncConnection, Sequence[int] | None], Awaitable[list[int]]],
         outcome: str) -> int:
    """Retry or drop: the POSITIONs (or --all), with a JSON line per position; exit 1 when one
    is not parked. `confirm_question` (with `{count}`) is asked first unless `--yes`."""
    parked = _run(settings, list_parked)
    chosen, missing = _chosen(positions, all_, parked)
    for position in missing:
        click.echo(json.dumps({"position": position, "outcome": "not-found"}))
    count = len(parked) if chosen is None else len(chosen)
    if dry_run:
        click.echo(f"would {verb} {count} parked message(s)")
        return FAILED if missing else OK
    if count and confirm_question is not None:
        confirm(confirm_question.format(count=count), yes=yes)
    done = _run(settings, lambda conn: action(conn, chosen)) if count else []
    for position in done:
        click.echo(json.dumps({"position": position, "outcome": outcome}))
    return FAILED if missing else OK


@click.group(name="outbox", epilog=epilog())
def outbox_group() -> None:
    """Inspect, retry or drop the messages the relay parked.

    The relay parks an outbox message that Kafka refuses for good (over the broker's size limit,
    a topic the service may not write) so that the messages after it are still published;
    diagnostics report parked messages as critical until an operator acts.
    """


@outbox_group.command(name="list", epilog=epilog("some messages are parked"))
@with_settings(DATABASE)
def list_command(settings: ServiceSettings) -> int:
    """Print one JSON line per parked message (position, topic, key, bytes, error), then
    their count; exit 1 when there is any."""
    parked = _run(settings, list_parked)
    for message in parked:
        click.echo(json.dumps(message.summary()))
    click.echo(f"{len(parked)} parked message(s)")
    return FAILED if parked else OK


@outbox_group.command(name="retry", epilog=epilog("a POSITION that is not parked"))
@click.argument("positions", metavar="[POSITION]...", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True,
              help="Retry every parked message (asks for confirmation).")
@yes_option
@dry_run_option
@with_settings(DATABASE)
def retry_command(settings: ServiceSettings, positions: tuple[int, ...], all_: bool, yes: bool,
                  dry_run: bool) -> int:
    """Put parked messages back at the end of the outbox, in their order, for the relay to
    publish (fix the cause first: a message still refused is parked again).

    Give the POSITIONs to retry (from `outbox list`), or --all.
    """
    return _act(settings, positions, all_, dry_run=dry_run, verb="retry",
                confirm_question=("Retry all {count} parked message(s)?" if all_ else None),
                yes=yes, action=retry_parked, outcome="queued-again")


@outbox_group.command(name="drop", epilog=epilog("a POSITION that is not parked"))
@click.argument("positions", metavar="[POSITION]...", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Drop every parked message.")
@yes_option
@dry_run_option
@with_settings(DATABASE)
def drop_command(settings: ServiceSettings, positions: tuple[int, ...], all_: bool, yes: bool,
                 dry_run: bool) -> int:
    """Delete parked messages for good: their events stay in the service's event store but are
    never published (always asks for confirmation, or --yes).

    Give the POSITIONs to drop (from `outbox list`), or --all.
    """
    return _act(settings, positions, all_, dry_run=dry_run, verb="drop",
                confirm_question="Drop {count} parked message(s) for good?", yes=yes,
                action=drop_parked, outcome="dropped")
