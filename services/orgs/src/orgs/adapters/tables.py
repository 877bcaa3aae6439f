"""The orgs service's own tables (beside the platform's event store, outbox and marks).

`organisation` is the read model of the organisation streams, written in the same transaction
as each append; `org_member` is the projection of identity's users (who is in which org);
`org_merge` tracks each merge saga; `setting_value` holds the settings orgs has seen published.
"""

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
    Sequence,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

# Integer ids of new organisations; 1 is reserved for the host organisation (first run).
organisation_id_seq = Sequence("organisation_id_seq", start=2, metadata=metadata)

ACTIVE = "active"
MERGING = "merging"
DELETED = "deleted"

organisation = Table(
    "organisation",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("uuid", String(36), nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("type", String(255), nullable=False, server_default=""),
    Column("nationality", String(255), nullable=False, server_default=""),
    Column("sector", String(255), nullable=False, server_default=""),
    Column("contacts", Text, nullable=False, server_default=""),
    Column("local", Boolean, nullable=False, server_default="true"),
    Column("restricted_to_domain", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("landingpage", Text, nullable=True),
    Column("created_by", BigInteger, nullable=False, server_default="0"),
    Column("date_created", DateTime(timezone=True), nullable=False),
    Column("date_modified", DateTime(timezone=True), nullable=False),
    # active | merging (the source of a running merge) | deleted (a tombstone: the id stays used)
    Column("status", String(16), nullable=False, server_default=ACTIVE),
    Column("merged_into", BigInteger, nullable=True),
    Column("logo", LargeBinary, nullable=True),
    Column("logo_sha256", String(64), nullable=True),
    # Names and uuids are unique among the organisations that are not deleted.
    Index("ux_organisation_name", func.lower(text("name")), unique=True,
          postgresql_where=text("status <> 'deleted'")),
    Index("ux_organisation_uuid", "uuid", unique=True,
          postgresql_where=text("status <> 'deleted'")),
)

org_member = Table(
    "org_member",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_id", BigInteger, nullable=False),
    Column("email", String(255), nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The user stream's version this row reflects, and a tombstone for a deleted user
    # (migration 0004): an older event (a replay) never brings a user back or moves one back.
    Column("version", Integer, nullable=True),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Index("ix_org_member_org_id", "org_id"),
)

org_merge = Table(
    "org_merge",
    metadata,
    Column("merge_id", UUID(as_uuid=False), primary_key=True),
    Column("source_id", BigInteger, nullable=False),
    Column("target_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # running | completed
    Column("users_moved", Integer, nullable=False, server_default="0"),
    Column("requested_by", BigInteger, nullable=False, server_default="0"),
    Column("actor", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("correlation_id", String(200), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ux_org_merge_running_source", "source_id", unique=True,
          postgresql_where=text("status = 'running'")),
)

# Server settings: misp_platform.server_settings.setting_value (migrations 0002, 0006).
