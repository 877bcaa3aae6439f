"""Tamper evidence on the real database: edits, deletions, reordering and a rewrite that
recomputes every hash are all caught; retention prunes whole checkpoint ranges and still
verifies; a rebuild from the topics holds the same entries and keeps pruned rows pruned."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.store import stream_entries
from audit.domain.chain import GENESIS, entry_hash
from audit.handlers.integrity import prune, verify, write_checkpoint
from audit.handlers.rebuild import rebuild
from audit.projections.log import Options, Source, project
from audit.testing import Namespace, count_entries, envelope_of, running_consumer, wait_until
from misp_contracts.events.identity import USER_TOPIC, UserState, UserUpdated
from misp_contracts.topics import Topic
from misp_platform.kafka import ensure_topics


def event(i: int) -> UserUpdated:
    return UserUpdated(user=UserState(id=i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test",
                                      org_id=1, role_id=3),
                       changes={"email": (f"old{i}@x.test", f"u{i}@x.test")})


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def fill(engine: AsyncEngine, n: int, *, chains: int = 2, start: int = 0) -> None:
    async with engine.begin() as conn:
        await project(conn, [(envelope_of(event(start + i)),
                              Source("misp.identity.user.v1", i % chains, start + i))
                             for i in range(n)], Options(publish=False))


async def at_least(engine: AsyncEngine, n: int) -> bool:
    return await count_entries(engine) >= n


async def sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def public(key: Ed25519PrivateKey) -> bytes:
    from audit.domain.checkpoint import public_raw

    return public_raw(key)


async def test_an_untouched_log_verifies(audit_engine: AsyncEngine,
                                         key: Ed25519PrivateKey) -> None:
    await fill(audit_engine, 10)
    await write_checkpoint(audit_engine, key)
    await fill(audit_engine, 4, start=10)  # entries after the last checkpoint verify too
    report = await verify(audit_engine, await public(key))
    assert report.ok, report.as_dict()
    assert report.entries == 14 and report.chains == 2 and report.checkpoints == 1


@pytest.mark.parametrize(("damage", "reason"), [
    ("UPDATE log_entry SET change = 'email (a) => (b)' WHERE id = 4", "content"),
    ("UPDATE log_entry SET email = 'someone@else' WHERE id = 4", "content"),
    ("DELETE FROM log_entry WHERE id = 4", "missing"),
    ("UPDATE log_entry SET id = -id WHERE id IN (4, 6);"
     "UPDATE log_entry SET id = CASE id WHEN -4 THEN 6 ELSE 4 END WHERE id IN (-4, -6)",
     "content"),
    ("UPDATE log_entry SET seq = -seq WHERE id IN (2, 4);"
     "UPDATE log_entry SET seq = CASE seq WHEN -1 THEN 2 ELSE 1 END WHERE id IN (2, 4)",
     ""),
])
async def test_edits_deletions_and_reordering_in_sql_are_found(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey, damage: str, reason: str) -> None:
    await fill(audit_engine, 10)
    await write_checkpoint(audit_engine, key)
    await sql(audit_engine, *damage.split(";"))
    report = await verify(audit_engine, await public(key))
    assert not report.ok
    assert report.first_broken is not None and reason in report.first_broken.reason
    assert report.first_broken.chain == "misp.identity.user.v1:1"


async def test_a_rewrite_that_recomputes_every_hash_is_found_by_the_signed_checkpoint(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    await fill(audit_engine, 8)
    await write_checkpoint(audit_engine, key)
    # The attacker changes an entry and recomputes the whole chain and the chain heads.
    async with audit_engine.begin() as conn:
        entries = [e async for e in stream_entries(conn)]
        prev: dict[str, str] = {}
        for e in entries:
            title = e.title + " (forged)" if e.id == 3 else e.title
            changed = e._replace(title=title, prev_hash=prev.get(e.chain, GENESIS))
            new_hash = entry_hash(changed)
            prev[e.chain] = new_hash
            await conn.execute(text("UPDATE log_entry SET title = :t, prev_hash = :p, "
                                    "hash = :h WHERE id = :i"),
                               {"t": title, "p": changed.prev_hash, "h": new_hash, "i": e.id})
        for chain, head in prev.items():
            await conn.execute(text("UPDATE log_chain SET hash = :h WHERE chain = :c"),
                               {"h": head, "c": chain})
    report = await verify(audit_engine, await public(key))
    assert not report.ok and report.first_broken is not None
    assert "signed checkpoint" in report.first_broken.reason
    # Forging the checkpoint too needs the key: a checkpoint signed by another key is refused.
    await write_checkpoint(audit_engine, Ed25519PrivateKey.generate(), force=True)
    report = await verify(audit_engine, await public(key))
    assert report.checkpoint_problem is not None and "signature" in report.checkpoint_problem


async def test_deleting_the_checkpoints_in_the_database_is_found_from_the_kafka_copies(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    await fill(audit_engine, 4)
    first = await write_checkpoint(audit_engine, key)
    assert first is not None
    await sql(audit_engine, "DELETE FROM log_checkpoint")
    report = await verify(audit_engine, await public(key), published=[first])
    assert not report.ok and "not in the database" in (report.checkpoint_problem or "")


async def test_retention_prunes_whole_checkpoint_ranges_and_still_verifies(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
    await fill(audit_engine, 6)
    old = await write_checkpoint(audit_engine, key)
    assert old is not None
    await sql(audit_engine, "UPDATE log_checkpoint SET created_at = now() - interval '40 days'")
    await fill(audit_engine, 4, start=6)
    await write_checkpoint(audit_engine, key)
    report = await prune(audit_engine, key, retention_days=30)
    assert report.pruned_entries == 6 and report.checkpoint is not None
    assert report.checkpoint.kind == "pruned"
    assert await count_entries(audit_engine) == 4
    check = await verify(audit_engine, await public(key))
    assert check.ok, check.as_dict()
    # Deleting one more old entry by hand is not a prune: the signed mark says where it ends.
    await sql(audit_engine, "DELETE FROM log_entry WHERE id = (SELECT min(id) FROM log_entry)")
    assert not (await verify(audit_engine, await public(key))).ok


async def test_rebuild_replays_the_topics_into_the_same_entries_and_keeps_pruned_rows_out(
        audit_engine: AsyncEngine, key: Ed25519PrivateKey, namespace: Namespace,
        kafka_bootstrap: str) -> None:
    topic = namespace.topic_of(USER_TOPIC)
    await ensure_topics(kafka_bootstrap, [Topic(topic, owner="test", partitions=2)])
    namespace.topics.add(topic)
    await namespace.publish([(USER_TOPIC, envelope_of(event(i))) for i in range(6)])
    async with running_consumer(audit_engine, namespace, options=Options(publish=False)):
        await wait_until(lambda: at_least(audit_engine, 6), what="six rows")
        await write_checkpoint(audit_engine, key)
        await sql(audit_engine,
                  "UPDATE log_checkpoint SET created_at = now() - interval '40 days'")
        await namespace.publish([(USER_TOPIC, envelope_of(event(i))) for i in range(6, 10)])
        await wait_until(lambda: at_least(audit_engine, 10), what="ten rows")
        pruned = await prune(audit_engine, key, retention_days=30)
        assert pruned.pruned_entries == 6
        async with audit_engine.connect() as conn:
            before = set((await conn.execute(text(
                "SELECT source_event_id FROM log_entry"))).scalars())
        seen: list[int] = []
        report = await rebuild(audit_engine, key, bootstrap=kafka_bootstrap,
                               pattern=namespace.pattern,
                               progress=lambda by, _total: seen.append(by))
    assert report.skipped_pruned == 6 and report.entries == 4 and sum(seen) == 10
    async with audit_engine.connect() as conn:
        after = set((await conn.execute(text(
            "SELECT source_event_id FROM log_entry"))).scalars())
        epoch = (await conn.execute(text("SELECT max(epoch) FROM log_checkpoint"))).scalar()
        # the rebuilt log still lists its emails for the substring searches (queries.py)
        listed = (await conn.execute(text(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'log_entry'::regclass "
            "AND tgname = 'log_email_fill'"))).scalar()
        indexed = (await conn.execute(text(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'log_entry' "
            "AND indexname = 'ix_log_entry_email'"))).scalar()
    assert after == before and len(after) == 4 and epoch == 2
    assert listed == 1 and indexed == 1
    check = await verify(audit_engine, await public(key))
    assert check.ok, check.as_dict()
    assert check.epoch == 2 and check.entries == 4
