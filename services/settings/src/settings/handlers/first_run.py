"""First run: MISP's seeded import regexps and example org blocklist entries, through events like
any other change, exactly once (a marker row; a seed deleted later stays deleted)."""

from __future__ import annotations

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor
from misp_platform.transaction import in_transaction
from settings.adapters.tables import first_run, org_blocklist, regexp
from settings.domain.seeds import SEEDED_ORG_BLOCKLIST, SEEDED_REGEXPS
from settings.handlers.lists import ORG_BLOCKLIST, REGEXP, add_entry_in

log = structlog.get_logger(__name__)
STEP = "misp-seeds"
_LOCK_KEY = 0x5E77_1065


async def seed(engine: AsyncEngine) -> bool:
    """Seed once; True if this call did it."""

    async def work(conn: AsyncConnection) -> bool:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        done = (await conn.execute(select(first_run.c.step)
                                   .where(first_run.c.step == STEP))).first()
        if done is not None:
            return False
        actor = Actor.system()
        for entry_id, pattern, replacement in SEEDED_REGEXPS:
            await add_entry_in(conn, REGEXP, {"regexp": pattern, "replacement": replacement,
                                              "type": "ALL"}, actor, entry_id=entry_id)
        for org_uuid, name, comment in SEEDED_ORG_BLOCKLIST:
            await add_entry_in(conn, ORG_BLOCKLIST, {"org_uuid": org_uuid, "org_name": name,
                                                     "comment": comment}, actor)
        top = (await conn.execute(select(func.max(regexp.c.id)))).scalar() or 0
        await conn.execute(text("SELECT setval('regexp_id_seq', GREATEST(:top, 1))"),
                           {"top": top})
        await conn.execute(pg_insert(first_run).values(step=STEP).on_conflict_do_nothing())
        return True

    did = await in_transaction(engine, work)
    if did:
        log.info("settings.seeded", regexps=len(SEEDED_REGEXPS),
                 org_blocklist=len(SEEDED_ORG_BLOCKLIST), table=org_blocklist.name)
    return did
