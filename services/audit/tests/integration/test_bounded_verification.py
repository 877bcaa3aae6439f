"""Verification from a signed checkpoint on the real database: the entries after it are
rehashed (a tampered one is found), those before are trusted from its signature (the answer says
they were not covered; the full walk finds a tampered one), and the range a request may take."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.keys import load_or_create_key
from audit.adapters.store import last_verification
from audit.domain.checkpoint import Checkpoint, public_raw
from audit.domain.verification import VerifyRangeError
from audit.handlers.integrity import VerifyLimits, choose_range, verify, write_checkpoint
from audit.handlers.jobs import job_handlers
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from audit.testing import envelope_of
from misp_contracts.events.identity import UserState, UserUpdated
from misp_platform.testing import run_job

CHAINS = 2


async def fill(engine: AsyncEngine, n: int, *, start: int = 0) -> None:
    events = [UserUpdated(user=UserState(id=i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test",
                                         org_id=1, role_id=3), changes={})
              for i in range(start, start + n)]
    async with engine.begin() as conn:
        await project(conn, [(envelope_of(e), Source("misp.identity.user.v1", i % CHAINS, i))
                             for i, e in zip(range(start, start + n), events, strict=True)],
                      Options(publish=False))


async def tamper(engine: AsyncEngine, entry_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE log_entry SET title = 'nothing to see' WHERE id = :i"),
                           {"i": entry_id})


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def two_checkpoints(engine: AsyncEngine, key: Ed25519PrivateKey) -> Checkpoint:
    """10 entries, checkpoint 1, 6 more, checkpoint 2, 4 more: returns checkpoint 1."""
    await fill(engine, 10)
    first = await write_checkpoint(engine, key)
    await fill(engine, 6, start=10)
    await write_checkpoint(engine, key)
    await fill(engine, 4, start=16)
    assert first is not None
    return first


async def test_a_tampered_entry_after_the_checkpoint_is_found_by_the_bounded_verification(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    since = await two_checkpoints(audit_engine, key)
    report = await verify(audit_engine, public_raw(key), since=since)
    assert report.ok, report.as_dict()
    assert (report.full, report.entries, report.not_covered, report.checkpoints) == (
        False, 10, 10, 2)
    assert report.as_dict()["since_checkpoint"] == since.number
    await tamper(audit_engine, 13)  # written after checkpoint 1
    broken = await verify(audit_engine, public_raw(key), since=since)
    assert not broken.ok and broken.first_broken is not None
    assert broken.first_broken.entry_id == 13
    assert broken.first_broken.reason == "content does not match its hash"


async def test_a_tampered_entry_before_the_checkpoint_is_left_to_the_full_verification(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    since = await two_checkpoints(audit_engine, key)
    await tamper(audit_engine, 3)  # covered by checkpoint 1's signed heads
    bounded = await verify(audit_engine, public_raw(key), since=since)
    assert bounded.ok and not bounded.full and bounded.not_covered == 10  # not covered: said
    full = await verify(audit_engine, public_raw(key))
    assert not full.ok and full.full
    assert full.first_broken is not None and full.first_broken.entry_id == 3


async def test_a_rewrite_after_the_checkpoint_differs_from_the_next_signed_heads(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    since = await two_checkpoints(audit_engine, key)
    async with audit_engine.begin() as conn:  # the first entry after checkpoint 1, relinked
        await conn.execute(text("UPDATE log_entry SET prev_hash = repeat('a', 64) "
                                "WHERE id = 11"))
    report = await verify(audit_engine, public_raw(key), since=since)
    assert not report.ok and report.first_broken is not None
    assert report.first_broken.reason == "previous hash does not match"


async def test_a_request_takes_the_whole_small_log_and_a_recent_range_of_a_big_one(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    since = await two_checkpoints(audit_engine, key)
    async with audit_engine.connect() as conn:
        assert await choose_range(conn, VerifyLimits(default=20, most=20)) is None
        newest = await choose_range(conn, VerifyLimits(default=5, most=20))
        assert newest is not None and newest.number == since.number + 1  # 4 entries after it
        older = await choose_range(conn, VerifyLimits(default=10, most=20))
        assert older is not None and older.number == since.number
        named = await choose_range(conn, VerifyLimits(default=5, most=20), since_checkpoint=1)
        assert named is not None and named.number == 1
        with pytest.raises(VerifyRangeError, match="no checkpoint 9"):
            await choose_range(conn, VerifyLimits(default=5, most=20), since_checkpoint=9)
        with pytest.raises(VerifyRangeError, match="holds 20 entries"):
            await choose_range(conn, VerifyLimits(default=5, most=19), full=True)


async def test_the_verify_job_keeps_its_result_for_the_api(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    key_path = tmp_path / "audit.key"
    await fill(audit_engine, 5)
    await write_checkpoint(audit_engine, load_or_create_key(key_path))
    await tamper(audit_engine, 2)
    done = await run_job(audit_engine, service="audit", queue="default",
                         job_type="audit_verify", job_input="db-only",
                         handlers=job_handlers(AuditSettings(database_url=audit_db,
                                                             signing_key_path=str(key_path))))
    assert done["outcome"] == "succeeded", done
    async with audit_engine.connect() as conn:
        last = await last_verification(conn)
    assert last is not None and last["ran_by"] == "job" and last["full"] is True
    assert last["ok"] is False and last["first_broken"]["id"] == 2
    assert last["compared_with_kafka"] is False and last["started_at"] <= last["finished_at"]
