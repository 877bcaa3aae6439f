"""The settings service's own tables (beside the platform's event store, outbox and marks).

Each is a read model written in the same transaction as the events it follows:
`setting_override` (the current override of each setting; absent = the catalogue's default),
`event_blocklist`, `org_blocklist`, `regexp` and `allowedlist` (MISP's tables and columns).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

setting_override = Table(
    "setting_override",
    metadata,
    Column("name", String(255), primary_key=True),
    # NULL for a redacted setting: its value is never kept here (ARCHITECTURE §6).
    Column("value", JSONB, nullable=True),
    Column("is_set", Boolean, nullable=False, server_default="true"),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

event_blocklist_id_seq = Sequence("event_blocklist_id_seq", metadata=metadata)
event_blocklist = Table(
    "event_blocklist",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("event_uuid", String(36), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("event_info", Text, nullable=False, server_default=""),
    Column("comment", Text, nullable=False, server_default=""),
    Column("event_orgc", String(255), nullable=False, server_default=""),
    Column("version", Integer, nullable=False),
)

org_blocklist_id_seq = Sequence("org_blocklist_id_seq", metadata=metadata)
org_blocklist = Table(
    "org_blocklist",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_uuid", String(36), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("org_name", String(255), nullable=False, server_default=""),
    Column("comment", Text, nullable=False, server_default=""),
    Column("version", Integer, nullable=False),
)

regexp_id_seq = Sequence("regexp_id_seq", metadata=metadata)
regexp = Table(
    "regexp",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("regexp", Text, nullable=False),
    Column("replacement", Text, nullable=False, server_default=""),
    Column("type", String(100), nullable=False, server_default="ALL"),
    Column("version", Integer, nullable=False),
)

allowedlist_id_seq = Sequence("allowedlist_id_seq", metadata=metadata)
allowedlist = Table(
    "allowedlist",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False, unique=True),
    Column("version", Integer, nullable=False),
)

# The list tables by name (what `handlers.lists.ListKind` names a list's table by).
LIST_TABLES = {t.name: t for t in (event_blocklist, org_blocklist, regexp, allowedlist)}

# First-run steps already done (seeding MISP's regexps and org blocklist examples), so that a
# restart never seeds twice and a deleted seed stays deleted.
first_run = Table(
    "first_run",
    metadata,
    Column("step", String(64), primary_key=True),
    Column("done_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The reports of the `settings_diagnostics` job, one per job (the job's message is the summary).
diagnostics_report = Table(
    "diagnostics_report",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("ok", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
    Column("report", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
