"""What the mailer consumer handles: the principals projection, its own projections of users and
settings, the commands on `misp.mailer.commands.v1` (alerts, contact reporter, a user's
"forgot password" from identity), and the jobs service's answers about bulk sends' jobs."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailer.handlers.bulk import (
    when_job_cancelled_record,
    when_job_failed_record,
    when_job_queued_record,
    when_job_rejected_record,
)
from mailer.handlers.compose import Mailer, mailer_for
from mailer.handlers.contact import (
    when_contact_requested_mail_reporter,
    when_event_published_alert,
    when_password_reset_requested_mail,
)
from mailer.projections.catch_up import backfill_users
from mailer.projections.users import (
    when_user_deleted_project,
    when_user_saved_project,
)
from mailer.settings import MailerSettings
from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import USER_TOPIC, UserCreated, UserDeleted, UserUpdated
from misp_contracts.events.jobs import (
    JOB_TOPIC,
    JobAttemptFailed,
    JobCancelled,
    JobQueued,
    JobRejected,
)
from misp_contracts.events.mailer import (
    MAILER_COMMANDS_TOPIC,
    ContactReporter,
    NotifyEventPublished,
    SendPasswordReset,
)
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_platform.config import ServiceSettings
from misp_platform.consumer import Handler
from misp_platform.server_settings import when_setting_changed_record

PROJECTIONS: dict[str, Handler] = {
    UserCreated.type: when_user_saved_project,
    UserUpdated.type: when_user_saved_project,
    UserDeleted.type: when_user_deleted_project,
    SettingChanged.type: when_setting_changed_record,
}

# The jobs service's answers about bulk sends' jobs (the other job events are not read).
BULK_JOB_ANSWERS: dict[str, Handler] = {
    JobQueued.type: when_job_queued_record,
    JobRejected.type: when_job_rejected_record,
    JobAttemptFailed.type: when_job_failed_record,
    JobCancelled.type: when_job_cancelled_record,
}


def command_handlers(mailer: Mailer) -> dict[str, Handler]:
    async def alert(conn: AsyncConnection, envelope: Envelope) -> None:
        await when_event_published_alert(conn, envelope, mailer)

    async def contact(conn: AsyncConnection, envelope: Envelope) -> None:
        await when_contact_requested_mail_reporter(conn, envelope, mailer)

    async def forgot(conn: AsyncConnection, envelope: Envelope) -> None:
        await when_password_reset_requested_mail(conn, envelope, mailer)

    return {NotifyEventPublished.type: alert, ContactReporter.type: contact,
            SendPasswordReset.type: forgot}


def handlers(settings: ServiceSettings, mailer: Mailer | None = None) -> Mapping[str, Handler]:
    """The principals projection has a consumer of its own (misp_platform.cli)."""
    if mailer is None:
        assert isinstance(settings, MailerSettings)
        mailer = mailer_for(settings)
    return {**PROJECTIONS, **BULK_JOB_ANSWERS, **command_handlers(mailer)}


async def on_consumer_start(settings: ServiceSettings, engine: AsyncEngine) -> None:
    await backfill_users(engine, settings.kafka_bootstrap_servers)


def topics(_settings: ServiceSettings) -> list[str]:
    return sorted({USER_TOPIC, SETTING_TOPIC, MAILER_COMMANDS_TOPIC, JOB_TOPIC})
