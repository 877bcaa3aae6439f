"""First run: MISP's seeded import regexps and example org blocklist entries, and the instance's
UUID (`MISP.uuid`, which identifies it to sync partners, when no one set it), through events like
any other change, each step exactly once (a marker row; a seed deleted later stays deleted)."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor
from misp_platform.transaction import in_transaction
from settings.adapters import queries, store
from settings.domain.seeds import SEEDED_ORG_BLOCKLIST, SEEDED_REGEXPS
from settings.domain.settings import decide_change, lookup
from settings.handlers.lists import ORG_BLOCKLIST, REGEXP, add_entry_in

log = structlog.get_logger(__name__)
STEP = "misp-seeds"
UUID_STEP = "instance-uuid"
INSTANCE_UUID = "MISP.uuid"
_LOCK_KEY = 0x5E77_1065


async def seed(engine: AsyncEngine) -> bool:
    """Seed once; True if this call did it."""

    async def work(conn: AsyncConnection) -> bool:
        await store.lock_first_run(conn, _LOCK_KEY)
        await _instance_uuid(conn)
        if await queries.first_run_done(conn, STEP):
            return False
        actor = Actor.system()
        for entry_id, pattern, replacement in SEEDED_REGEXPS:
            await add_entry_in(conn, REGEXP, {"regexp": pattern, "replacement": replacement,
                                              "type": "ALL"}, actor, entry_id=entry_id)
        for org_uuid, name, comment in SEEDED_ORG_BLOCKLIST:
            await add_entry_in(conn, ORG_BLOCKLIST, {"org_uuid": org_uuid, "org_name": name,
                                                     "comment": comment}, actor)
        await store.reset_regexp_sequence(conn)
        await store.mark_first_run(conn, STEP)
        return True

    did = await in_transaction(engine, work)
    if did:
        log.info("settings.seeded", regexps=len(SEEDED_REGEXPS),
                 org_blocklist=len(SEEDED_ORG_BLOCKLIST), table=ORG_BLOCKLIST.table)
    return did


async def _instance_uuid(conn: AsyncConnection) -> None:
    """Give the instance a UUID once, unless an operator set one first (MISP generates it too)."""
    if await queries.first_run_done(conn, UUID_STEP):
        return
    current = await queries.current_setting(conn, INSTANCE_UUID, lock=True)
    if not current.value:
        event = decide_change(lookup(INSTANCE_UUID), current, str(uuid.uuid4()))
        await store.append_setting(conn, current, event, Actor.system())
        log.info("settings.instance_uuid", uuid=event.value)
    await store.mark_first_run(conn, UUID_STEP)
