"""The mailer's own tables: users and settings as the mailer knows them (projections of
identity's and settings' events), and the mail queue with its idempotency keys."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

# A user as the mailer needs one: address, org, alert flags and GnuPG key.
mail_user = Table(
    "mail_user", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("email", Text, nullable=False),
    Column("org_id", BigInteger, nullable=False),
    Column("role_id", BigInteger, nullable=False, server_default="0"),
    Column("disabled", Boolean, nullable=False, server_default="false"),
    Column("autoalert", Boolean, nullable=False, server_default="false"),
    Column("contactalert", Boolean, nullable=False, server_default="false"),
    Column("gpgkey", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The user stream's version this row reflects, and a tombstone for a deleted user
    # (migration 0006): a replayed creation never makes a deleted user a recipient again.
    Column("version", Integer, nullable=True),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Index("ix_mail_user_org", "org_id"),
)

# Server settings: misp_platform.server_settings.setting_value (migration 0008).

# One API request or command: the idempotency key of everything it queued.
mail_request = Table(
    "mail_request", metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("actor_user_id", BigInteger),
    Column("mails", Integer, nullable=False, server_default="0"),
    Column("skipped", JSONB, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A bulk send (`admin/users/email` to all users) and its `bulk_email` job. The text stays here:
# the job's data on Kafka carries only the id. status: pending (EnqueueJob in the outbox) ->
# queued (the jobs service answered with the job id) -> done | rejected | failed | cancelled.
bulk_request = Table(
    "bulk_request", metadata,
    Column("id", Text, primary_key=True),  # the request id, also the mail request's id
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("custom_message", Boolean, nullable=False),
    Column("scope_org_id", BigInteger),  # an org admin's org; NULL: every org (site admin)
    Column("actor", JSONB, nullable=False),
    Column("recipients", Integer, nullable=False),  # enabled users in scope when asked
    Column("status", Text, nullable=False, server_default="pending"),
    Column("job_id", BigInteger),
    Column("mails", Integer),
    Column("skipped", JSONB),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_bulk_request_job", "job_id"),
)

# One outgoing mail. `raw` is the final message (signed, encrypted where possible), dropped
# once sent; status: pending -> sent | failed.
mail = Table(
    "mail", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("request_id", Text, nullable=False),
    Column("message_id", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("user_id", BigInteger),
    Column("sender", Text, nullable=False),
    Column("actor", JSONB),  # who asked (the audit's "who"), as the envelope's Actor
    Column("subject", Text, nullable=False),
    Column("encrypted", Boolean, nullable=False),
    Column("signed", Boolean, nullable=False),
    Column("raw", LargeBinary),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False,
           server_default=func.now()),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_mail_pending", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_mail_request", "request_id"),
)
