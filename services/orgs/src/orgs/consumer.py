"""What the orgs consumer handles: the principals projection (identity's and orgs' events), the
user projection (who is in which organisation) and the merge saga's last step."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.events.identity import USER_TOPIC, UserCreated, UserDeleted, UserUpdated
from misp_contracts.events.orgs import ORGANISATION_TOPIC, OrganisationMergeStarted
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_platform.config import ServiceSettings
from misp_platform.consumer import Handler
from misp_platform.server_settings import when_setting_changed_record
from orgs.adapters import store
from orgs.adapters.settings_feed import catch_up
from orgs.domain.model import HOST_ORG_ID
from orgs.handlers.organisations import ensure_host_organisation
from orgs.handlers.reactions import (
    complete_pending_merges,
    when_merge_started_complete_if_empty,
    when_user_deleted_untrack_member,
    when_user_saved_track_member,
)

REACTIONS: dict[str, Handler] = {
    UserCreated.type: when_user_saved_track_member,
    UserUpdated.type: when_user_saved_track_member,
    UserDeleted.type: when_user_deleted_untrack_member,
    OrganisationMergeStarted.type: when_merge_started_complete_if_empty,
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
    async with engine.connect() as conn:
        first_run = await store.load(conn, HOST_ORG_ID) is None
    if first_run:
        await catch_up(engine, settings.kafka_bootstrap_servers)
    await ensure_host_organisation(engine)
    async with engine.begin() as conn:
        await complete_pending_merges(conn)
