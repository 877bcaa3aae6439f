"""Changing a server setting: decide, then append the event, its outbox row and the override in
one transaction. The API and the CLI both come here (only the CLI may pass `via_cli`)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor
from misp_contracts.events.settings import SettingChanged
from misp_platform.transaction import in_transaction
from settings.adapters import queries, store
from settings.domain.settings import decide_change, lookup
from settings.domain.validation import LOCAL_ORG_TESTS

log = structlog.get_logger(__name__)


async def change_setting(engine: AsyncEngine, *, name: str, value: Any, actor: Actor,
                         force: bool = False, via_cli: bool = False,
                         correlation_id: str | None = None) -> SettingChanged:
    """Set a setting; a refusal (SettingsDomainError) leaves the old value in force."""
    definition = lookup(name)

    async def work(conn: AsyncConnection) -> SettingChanged:
        current = await queries.current_setting(conn, name, lock=True)
        local_orgs = (set(await queries.local_organisations(conn))
                      if definition.validation in LOCAL_ORG_TESTS else None)
        event = decide_change(definition, current, value, force=force, via_cli=via_cli,
                              local_orgs=local_orgs)
        await store.append_setting(conn, current, event, actor, correlation_id=correlation_id)
        return event

    event = await in_transaction(engine, work)
    log.info("setting.changed", setting=name, forced=event.forced, via_cli=via_cli)
    return event
