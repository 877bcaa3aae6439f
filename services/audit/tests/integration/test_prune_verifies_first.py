"""Retention verifies before it deletes, on the real database: a range whose chain was edited
or cut in SQL, or whose checkpoint does not carry the key's signature, is refused (by the
function, the command and the job) with nothing deleted and the culprit named; a good range
goes."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.keys import load_or_create_key
from audit.bootstrap import spec
from audit.domain.checkpoint import public_raw
from audit.handlers.integrity import PruneRefusedError, prune, verify, write_checkpoint
from audit.handlers.jobs import job_handlers
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from audit.testing import count_entries, envelope_of
from misp_contracts.events.identity import UserState, UserUpdated
from misp_platform.cli import build_cli
from misp_platform.cli_support import CliContext
from misp_platform.testing import run_job


def event(i: int) -> UserUpdated:
    return UserUpdated(user=UserState(id=i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test",
                                      org_id=1, role_id=3),
                       changes={"email": (f"old{i}@x.test", f"u{i}@x.test")})


async def fill(engine: AsyncEngine, n: int, *, start: int = 0) -> None:
    async with engine.begin() as conn:
        await project(conn, [(envelope_of(event(start + i)),
                              Source("misp.identity.user.v1", i % 2, start + i))
                             for i in range(n)], Options(publish=False))


async def sql(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement), params)


async def checkpoints(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM log_checkpoint"))).scalar_one())


async def old_range(engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    """Six entries under a checkpoint 40 days old (the range), then four newer ones under a
    checkpoint of today."""
    await fill(engine, 6)
    assert await write_checkpoint(engine, key) is not None
    await sql(engine, "UPDATE log_checkpoint SET created_at = now() - interval '40 days'")
    await fill(engine, 4, start=6)
    assert await write_checkpoint(engine, key) is not None


async def resign_first_checkpoint(engine: AsyncEngine, signer: Ed25519PrivateKey,
                                  body_edit: tuple[str, str] | None = None) -> None:
    async with engine.begin() as conn:
        body = (await conn.execute(text(
            "SELECT body FROM log_checkpoint WHERE number = 1"))).scalar_one()
        if body_edit is not None:
            body = body.replace(*body_edit)
            signature = (await conn.execute(text(
                "SELECT signature FROM log_checkpoint WHERE number = 1"))).scalar_one()
        else:
            signature = base64.b64encode(signer.sign(body.encode())).decode()
        await conn.execute(text("UPDATE log_checkpoint SET body = :b, signature = :s "
                                "WHERE number = 1"), {"b": body, "s": signature})


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing.key"
    load_or_create_key(path)
    return path


@pytest.mark.parametrize(("damage", "reason"), [
    ("UPDATE log_entry SET change = 'email (x) => (y)' WHERE id = 3", "content"),
    ("DELETE FROM log_entry WHERE id = 3", "missing"),
])
async def test_prune_refuses_a_range_whose_chain_was_tampered_and_deletes_nothing(
        audit_engine: AsyncEngine, key_path: Path, damage: str, reason: str) -> None:
    key = load_or_create_key(key_path)
    await old_range(audit_engine, key)
    await sql(audit_engine, damage)
    before = await count_entries(audit_engine)
    with pytest.raises(PruneRefusedError) as refused:
        await prune(audit_engine, key, retention_days=30)
    assert refused.value.checkpoint == 1
    broken = refused.value.broken
    assert broken is not None and reason in broken.reason
    assert broken.chain == "misp.identity.user.v1:0"
    assert "checkpoint 1" in str(refused.value) and "misp.identity.user.v1:0" in str(
        refused.value)
    assert await count_entries(audit_engine) == before
    assert await checkpoints(audit_engine) == 2
    with pytest.raises(PruneRefusedError):  # a dry run says so too
        await prune(audit_engine, key, retention_days=30, dry_run=True)


@pytest.mark.parametrize("forgery", ["signed by another key", "body edited"])
async def test_prune_refuses_a_range_whose_checkpoint_signature_is_wrong(
        audit_engine: AsyncEngine, key_path: Path, forgery: str) -> None:
    key = load_or_create_key(key_path)
    await old_range(audit_engine, key)
    if forgery == "signed by another key":
        await resign_first_checkpoint(audit_engine, Ed25519PrivateKey.generate())
    else:  # the signed head of chain 0 moved back to entry 1: the signature no longer fits
        await resign_first_checkpoint(audit_engine, key, body_edit=('"seq":3', '"seq":1'))
    with pytest.raises(PruneRefusedError) as refused:
        await prune(audit_engine, key, retention_days=30)
    assert "checkpoint 1: bad signature" in str(refused.value)
    assert refused.value.checkpoint == 1 and refused.value.broken is None
    assert await count_entries(audit_engine) == 10
    assert await checkpoints(audit_engine) == 2


async def test_prune_deletes_a_range_that_verifies_and_the_log_still_verifies(
        audit_engine: AsyncEngine, key_path: Path) -> None:
    key = load_or_create_key(key_path)
    await old_range(audit_engine, key)
    # Damage after the range is not the prune's to judge: it stays, for verify to report.
    report = await prune(audit_engine, key, retention_days=30)
    assert report.pruned_entries == 6 and report.upto == {"misp.identity.user.v1:0": 3,
                                                          "misp.identity.user.v1:1": 3}
    assert await count_entries(audit_engine) == 4
    assert (await verify(audit_engine, public_raw(key))).ok
    again = await prune(audit_engine, key, retention_days=30)  # the range is gone already
    assert again.pruned_entries == 0 and again.checkpoint is None


def audit_cli(settings: AuditSettings, *args: str) -> Result:
    return CliRunner().invoke(build_cli(spec), list(args), obj=CliContext.of(settings, spec))


async def test_the_prune_command_exits_1_naming_the_broken_row_and_deletes_nothing(
        audit_engine: AsyncEngine, audit_db: str, key_path: Path) -> None:
    settings = AuditSettings(database_url=audit_db, signing_key_path=str(key_path))
    await old_range(audit_engine, load_or_create_key(key_path))
    await sql(audit_engine, "UPDATE log_entry SET email = 'mallory@x.test' WHERE id = 4")
    done = await asyncio.to_thread(audit_cli, settings, "prune", "--days", "30", "--yes")
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["checkpoint"] == 1
    assert report["first_broken"]["id"] == 4
    assert "content does not match its hash" in report["refused"]
    assert await count_entries(audit_engine) == 10
    dry = await asyncio.to_thread(audit_cli, settings, "prune", "--days", "30", "--dry-run")
    assert dry.exit_code == 1 and json.loads(dry.stdout)["first_broken"]["id"] == 4
    keyless = settings.model_copy(update={"signing_key_path": str(key_path) + ".none"})
    nokey = await asyncio.to_thread(audit_cli, keyless, "prune", "--days", "30", "--dry-run")
    assert nokey.exit_code == 3 and "no signing key" in json.loads(nokey.stdout)["refused"]


async def test_the_prune_job_fails_naming_the_checkpoint_and_deletes_nothing(
        audit_engine: AsyncEngine, audit_db: str, key_path: Path) -> None:
    settings = AuditSettings(database_url=audit_db, signing_key_path=str(key_path),
                             retention_days=30)
    await old_range(audit_engine, load_or_create_key(key_path))
    await resign_first_checkpoint(audit_engine, Ed25519PrivateKey.generate())
    done = await run_job(audit_engine, service="audit", queue="default", job_type="audit_prune",
                         handlers=job_handlers(settings))
    assert done["outcome"] == "failed", done
    assert "PruneRefusedError" in done["message"]
    assert "checkpoint 1: bad signature" in done["message"]
    assert await count_entries(audit_engine) == 10 and await checkpoints(audit_engine) == 2
