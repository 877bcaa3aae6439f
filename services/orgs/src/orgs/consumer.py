"""What the orgs consumer handles: the principals projection (identity's and orgs' events), the
user projection (who is in which organisation) and the merge saga's last step.

The reactions (handlers/reactions.py) take a store: each is given the SQL one on the
consumer's transaction for the message (the platform's runner commits it with the offsets)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import USER_TOPIC, UserCreated, UserDeleted, UserUpdated
from misp_contracts.events.orgs import ORGANISATION_TOPIC, OrganisationMergeStarted
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_platform.config import ServiceSettings
from misp_platform.consumer import Handler
from misp_platform.server_settings import when_setting_changed_record
from orgs.adapters.ports import OrgsStore
from orgs.adapters.settings_feed import catch_up
from orgs.adapters.store import SqlOrgsStore, SqlUnitOfWork
from orgs.domain.model import HOST_ORG_ID
from orgs.handlers.organisations import ensure_host_organisation
from orgs.handlers.reactions import (
    complete_pending_merges,
    when_merge_started_complete_if_empty,
    when_user_deleted_untrack_member,
    when_user_saved_track_member,
)

Reaction = Callable[[OrgsStore, Envelope], Awaitable[None]]


def on_store(reaction: Reaction) -> Handler:
    """The consumer's handler of a reaction: the reaction on the SQL store of the message's
    transaction."""

    async def handle(conn: AsyncConnection, envelope: Envelope) -> None:
        await reaction(SqlOrgsStore(conn), envelope)

    handle.__name__ = handle.__qualname__ = reaction.__name__
    handle.__doc__ = reaction.__doc__
    return handle


REACTIONS: dict[str, Handler] = {
    UserCreated.type: on_store(when_user_saved_track_member),
    UserUpdated.type: on_store(when_user_saved_track_member),
    UserDeleted.type: on_store(when_user_deleted_untrack_member),
    OrganisationMergeStarted.type: on_store(when_merge_started_complete_if_empty),
    SettingChanged.type: when_setting_changed_record,
}


def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    """The principals projection has a consumer of its own (misp_platform.cli)."""
    return dict(REACTIONS)


def topics(_settings: ServiceSettings) -> list[str]:
    return [USER_TOPIC, ORGANISATION_TOPIC, SETTING_TOPIC]


async def on_consumer_start(settings: ServiceSettings, engine: AsyncEngine) -> None:
    """First run (the host organisation, named by MISP.org's latest published value), then any
    merge left ready by a crash."""
    async with SqlUnitOfWork(engine) as uow:
        first_run = await uow.store.load(HOST_ORG_ID) is None
    if first_run:
        await catch_up(engine, settings.kafka_bootstrap_servers)
    await ensure_host_organisation(SqlUnitOfWork(engine))
    await complete_pending_merges(SqlUnitOfWork(engine))
