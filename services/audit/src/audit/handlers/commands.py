"""The audit service's own commands: `python -m audit verify|checkpoint|prune|rebuild` and
`python -m audit worker` (the `audit_verify` and `audit_prune` jobs)."""

from __future__ import annotations

import asyncio
import json

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import SQLAlchemyError

from audit.adapters.keys import (
    SigningKeyError,
    load_key,
    load_or_create_key,
    public_pem,
    verification_key,
)
from audit.domain.checkpoint import public_raw
from audit.handlers.integrity import (
    PruneRefusedError,
    prune,
    published_checkpoints,
    record_verification,
    utcnow,
    verify,
    write_checkpoint,
)
from audit.handlers.jobs import job_handlers
from audit.handlers.rebuild import rebuild
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_platform.cli_support import (
    FAILED,
    OK,
    confirm,
    dry_run_option,
    epilog,
    require,
    with_settings,
    yes_option,
)
from misp_platform.config import DATABASE, KAFKA
from misp_platform.db import engine_for
from misp_platform.progress import progress
from misp_platform.worker_command import worker_command

NO_KEY = 3  # verify: the signing key is missing or unreadable, nothing was verified


@click.command(name="verify", epilog=epilog(
    "a chain is broken or a checkpoint does not match",
    f"{NO_KEY}  the signing key (AUDIT_SIGNING_KEY_PATH) is missing or unreadable: nothing "
    "was verified"))
@click.option("--db-only", is_flag=True,
              help="Skip the comparison with the checkpoints published on Kafka.")
@with_settings()
def verify_command(settings: AuditSettings, db_only: bool) -> int:
    """Verify every hash chain against the signed checkpoints, the whole log.

    Prints the report as JSON (with the first broken link, if any), and keeps it in the
    database: the API reports it as `last_full`.
    """
    require(settings, DATABASE, *(() if db_only else (KAFKA,)))
    try:
        public = public_raw(verification_key(settings.key_path, settings.verify_key))
    except SigningKeyError as exc:
        click.echo(json.dumps({"ok": False, "checkpoint_problem": str(exc)}))
        return NO_KEY

    async def run() -> int:
        published = [] if db_only else await published_checkpoints(
            settings.kafka_bootstrap_servers)
        engine = engine_for(settings, long_statements=True)
        try:
            started = utcnow()
            with progress("verifying entries") as bar:
                report = await verify(engine, public, published=published, bar=bar)
            try:
                async with engine.begin() as conn:
                    await record_verification(conn, report, started_at=started,
                                              ran_by="command", compared_with_kafka=not db_only)
            except SQLAlchemyError as exc:  # a verifier with read-only access still verifies
                click.echo(f"the result could not be kept for the API's last_full: {exc}",
                           err=True)
        finally:
            await engine.dispose()
        click.echo(json.dumps(report.as_dict(), indent=2))
        return OK if report.ok else FAILED

    return asyncio.run(run())


@click.command(name="public-key", epilog=epilog("", "3  no signing or verification key"))
@with_settings()
def public_key_command(settings: AuditSettings) -> int:
    """Print the key that verifies the checkpoints (Ed25519 public key, PEM).

    Publish it (AUDIT_VERIFY_KEY_PATH of every verifier, or anyone's copy): checkpoints signed
    by any audit process with the same signing key verify with it, without the secret.
    """
    try:
        key = verification_key(settings.key_path, settings.verify_key)
    except SigningKeyError as exc:
        click.echo(str(exc), err=True)
        return NO_KEY
    click.echo(public_pem(key), nl=False)
    return OK


@click.command(name="checkpoint", epilog=epilog())
@with_settings(DATABASE)
def checkpoint_command(settings: AuditSettings) -> int:
    """Sign every chain's head now, and print the checkpoint as JSON.

    The relay publishes it to Kafka; the signing key is created first if there is none.
    """

    async def run() -> None:
        engine = engine_for(settings)
        try:
            cp = await write_checkpoint(engine, load_or_create_key(settings.key_path),
                                        force=True)
        finally:
            await engine.dispose()
        click.echo(json.dumps(cp.as_record() if cp else None, indent=2))

    asyncio.run(run())
    return OK


@click.command(name="prune", epilog=epilog(
    "the range to prune does not verify (a checkpoint's signature or a link of a chain): "
    "nothing was deleted",
    f"{NO_KEY}  --dry-run without the signing key (AUDIT_SIGNING_KEY_PATH): nothing was "
    "verified"))
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Keep this many days (default: AUDIT_RETENTION_DAYS).")
@yes_option
@dry_run_option
@with_settings(DATABASE)
def prune_command(settings: AuditSettings, days: int | None, yes: bool, dry_run: bool) -> int:
    """Delete the log entries older than the retention, now.

    Whole checkpoint ranges go (each chain up to the head of the newest checkpoint older than
    the retention), then a checkpoint signs the new marks. The checkpoints' signatures and the
    chains up to that head are verified first: if they do not verify, nothing is deleted and
    the report names the checkpoint and the first broken entry. Deletes: asks for confirmation.
    """
    retention = days if days is not None else settings.retention_days
    if retention <= 0:
        click.echo("retention is off (AUDIT_RETENTION_DAYS=0, no --days): nothing to prune")
        return OK
    key: Ed25519PrivateKey
    if dry_run:
        try:
            key = load_key(settings.key_path)  # a dry run signs nothing and creates no key
        except SigningKeyError as exc:
            click.echo(json.dumps({"dry_run": True, "ok": False, "refused": str(exc)}))
            return NO_KEY
    else:
        confirm(f"Delete the audit log entries older than {retention} days?", yes=yes)
        key = load_or_create_key(settings.key_path)

    async def run() -> int:
        engine = engine_for(settings, long_statements=True)
        try:
            with progress("pruning chains") as bar:
                report = await prune(engine, key, retention_days=retention, dry_run=dry_run,
                                     bar=bar)
        except PruneRefusedError as exc:
            click.echo(json.dumps({**exc.as_dict(), "dry_run": dry_run}, indent=2))
            return FAILED
        finally:
            await engine.dispose()
        if dry_run:
            click.echo(json.dumps({"dry_run": True, "would_prune_entries": report.pruned_entries,
                                   "upto": report.upto}))
        else:
            click.echo(json.dumps({"pruned_entries": report.pruned_entries,
                                   "upto": report.upto,
                                   "checkpoint": report.checkpoint.number if report.checkpoint
                                   else None}))
        return OK

    return asyncio.run(run())


@click.command(name="rebuild", epilog=epilog())
@click.option("--pattern", default=TOPIC_PATTERN, show_default=True, metavar="REGEX",
              help="Replay the topics whose names match this regular expression.")
@yes_option
@with_settings(DATABASE, KAFKA)
def rebuild_command(settings: AuditSettings, pattern: str, yes: bool) -> int:
    """Rebuild the log from the Kafka topics, then swap it in.

    Replays every matching topic into fresh tables and replaces the live log with them (the old
    one is kept as log_entry_retired until the next rebuild); a new epoch of checkpoints begins.
    Rewrites the log: asks for confirmation.
    """
    confirm("Replace the audit log with one rebuilt from the Kafka topics?", yes=yes)

    async def run() -> None:
        engine = engine_for(settings, long_statements=True)
        try:
            with progress("replaying topics") as bar:
                done = 0

                def advance(by: int, more: int) -> None:
                    nonlocal done
                    done += by
                    if more:
                        bar.set_total(done + more)
                    bar.advance(by)

                report = await rebuild(engine, load_or_create_key(settings.key_path),
                                       bootstrap=settings.kafka_bootstrap_servers,
                                       pattern=pattern, progress=advance)
        finally:
            await engine.dispose()
        click.echo(json.dumps({"entries": report.entries, "replayed": report.replayed,
                               "skipped_pruned": report.skipped_pruned,
                               "checkpoint": report.checkpoint.number if report.checkpoint
                               else None}))

    asyncio.run(run())
    return OK


COMMANDS: list[click.Command] = [verify_command, checkpoint_command, prune_command,
                                 rebuild_command, public_key_command,
                                 worker_command("audit", job_handlers)]
