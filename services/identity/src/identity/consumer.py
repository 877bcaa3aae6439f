"""What the identity consumer handles: orgs' organisations (identity's org projection and the
principals), identity's own topics for the principals, the mailer's temporary passwords, and the
first run."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.queries import own_event_ids
from identity.handlers.first_run import seed_when_ready
from identity.handlers.merge import (
    when_merge_started_move_users,
    when_merged_sweep,
    when_organisation_deleted_sweep,
)
from identity.handlers.password_reset import (
    when_reset_link_issued_keep,
    when_temporary_password_issued_set_password,
)
from identity.projections.project import when_organisation_saved_project
from misp_contracts.envelope import Envelope
from misp_contracts.events.mailer import (
    CREDENTIAL_TOPIC,
    PasswordResetLinkIssued,
    TemporaryPasswordIssued,
)
from misp_contracts.events.orgs import (
    ORGANISATION_TOPIC,
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationMergeStarted,
    OrganisationUpdated,
)
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_platform.auth.principals import (
    PRINCIPAL_HANDLERS,
    project_principals,
)
from misp_platform.config import ServiceSettings
from misp_platform.consumer import BatchHandler, Handler
from misp_platform.server_settings import when_setting_changed_record

_ORG_HANDLERS: dict[str, Handler] = {
    OrganisationCreated.type: when_organisation_saved_project,
    OrganisationUpdated.type: when_organisation_saved_project,
    OrganisationDeleted.type: when_organisation_deleted_sweep,
}




async def principals_unless_own(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The principals consumer's handler in identity: every principal event but identity's own
    (applied in the append's transaction), in one statement per run."""
    own = await own_event_ids(conn, [e.id for e in envelopes])
    await project_principals(conn, [e for e in envelopes if e.id not in own])


def principal_handlers(_settings: ServiceSettings) -> Mapping[str, BatchHandler]:
    return dict.fromkeys(PRINCIPAL_HANDLERS, principals_unless_own)



def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    out: dict[str, Handler] = {
        SettingChanged.type: when_setting_changed_record,
        # The merge saga (services/orgs/README.md): move the source's users, close the source.
        OrganisationMergeStarted.type: when_merge_started_move_users,
        OrganisationMerged.type: when_merged_sweep,
        # Temporary passwords the mailer mailed (services/mailer/README.md): only their hash.
        TemporaryPasswordIssued.type: when_temporary_password_issued_set_password,
        # Reset links the mailer mailed ("forgot password"): only their token's sha256.
        PasswordResetLinkIssued.type: when_reset_link_issued_keep,
    }
    # The principals projection has a consumer of its own (principal_handlers, below).
    return {**out, **_ORG_HANDLERS}


def topics(_settings: ServiceSettings) -> list[str]:
    return [ORGANISATION_TOPIC, SETTING_TOPIC, CREDENTIAL_TOPIC]


_background: set[asyncio.Task[None]] = set()


async def on_consumer_start(settings: ServiceSettings, engine: AsyncEngine) -> None:
    """Start the first run's seeder beside the consumer loop (it ends once seeded)."""
    task = asyncio.create_task(seed_when_ready(
        engine, pepper=settings.pepper.get_secret_value(), state_dir=settings.state_dir))
    _background.add(task)
    task.add_done_callback(_background.discard)
