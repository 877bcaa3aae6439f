"""The audit service's own commands: `python -m audit verify|rebuild|prune|checkpoint` and
`python -m audit worker <queue>` (the `audit_verify` and `audit_prune` jobs)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

from audit.adapters.keys import SigningKeyError, load_key, load_or_create_key
from audit.handlers.integrity import (
    prune,
    public_of,
    published_checkpoints,
    verify,
    write_checkpoint,
)
from audit.handlers.jobs import job_handlers
from audit.handlers.rebuild import rebuild
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_platform.config import ServiceSettings
from misp_platform.db import create_engine
from misp_platform.worker_command import worker_command


def _audit(settings: ServiceSettings) -> AuditSettings:
    assert isinstance(settings, AuditSettings)
    return settings


def verify_command(settings: ServiceSettings, args: list[str]) -> int:
    """Exit 0 when every chain verifies; prints the report (first broken link) as JSON.
    `python -m audit verify db-only` skips the comparison with the checkpoints on Kafka."""
    s = _audit(settings)

    async def run() -> int:
        try:
            public = public_of(load_key(s.key_path))
        except SigningKeyError as exc:
            print(json.dumps({"ok": False, "checkpoint_problem": str(exc)}))
            return 2
        published = [] if "db-only" in args else await published_checkpoints(
            s.kafka_bootstrap_servers)
        engine = create_engine(s.database_url)
        try:
            report = await verify(engine, public, published=published)
        finally:
            await engine.dispose()
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.ok else 1

    return asyncio.run(run())


def checkpoint_command(settings: ServiceSettings, _args: list[str]) -> int:
    s = _audit(settings)

    async def run() -> int:
        engine = create_engine(s.database_url)
        try:
            cp = await write_checkpoint(engine, load_or_create_key(s.key_path), force=True)
        finally:
            await engine.dispose()
        print(json.dumps(cp.as_record() if cp else None, indent=2))
        return 0

    return asyncio.run(run())


def prune_command(settings: ServiceSettings, args: list[str]) -> int:
    """`python -m audit prune [days]` (default: AUDIT_RETENTION_DAYS)."""
    s = _audit(settings)
    days = int(args[0]) if args else s.retention_days

    async def run() -> int:
        engine = create_engine(s.database_url)
        try:
            report = await prune(engine, load_or_create_key(s.key_path), retention_days=days)
        finally:
            await engine.dispose()
        print(json.dumps({"pruned_entries": report.pruned_entries, "upto": report.upto,
                          "checkpoint": report.checkpoint.number if report.checkpoint
                          else None}))
        return 0

    return asyncio.run(run())


def rebuild_command(settings: ServiceSettings, args: list[str]) -> int:
    """Replay every topic into a fresh table with a progress bar, then swap it in."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    s = _audit(settings)
    pattern = args[0] if args else TOPIC_PATTERN

    async def run() -> int:
        engine = create_engine(s.database_url)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task("replaying topics", total=None)
            done = 0

            def advance(by: int, total: int) -> None:
                nonlocal done
                done += by
                if total:
                    bar.update(task, total=done + total)
                bar.update(task, completed=done)

            try:
                report = await rebuild(engine, load_or_create_key(s.key_path),
                                       bootstrap=s.kafka_bootstrap_servers, pattern=pattern,
                                       progress=advance)
            finally:
                await engine.dispose()
        print(json.dumps({"entries": report.entries, "replayed": report.replayed,
                          "skipped_pruned": report.skipped_pruned,
                          "checkpoint": report.checkpoint.number if report.checkpoint
                          else None}), file=sys.stdout)
        return 0

    return asyncio.run(run())


COMMANDS: dict[str, Callable[[ServiceSettings, list[str]], int]] = {
    "verify": verify_command,
    "checkpoint": checkpoint_command,
    "prune": prune_command,
    "rebuild": rebuild_command,
    "worker": worker_command("audit", job_handlers),
}
