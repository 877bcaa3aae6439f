"""The log projection: events in, MISP Log rows out, each chained and (live) sent to SIEMs.

A whole run of events is written with a handful of statements whatever its size: the chain heads
are locked once, ids drawn once, the rows copied in one COPY (the SIEM records are built while
the server writes them), the heads updated once and the SIEM records copied into the outbox
once, all in the consumer's transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.adapters.queries import org_ids_of_users
from audit.adapters.records import Headers, encode_headers, with_subject
from audit.adapters.store import (
    insert_entries,
    lock_chain_heads,
    logged_event_ids,
    next_entry_ids,
    update_chain_heads,
)
from audit.adapters.tables import LIVE, SETTINGS_TABLE, LogTables
from audit.domain.chain import Entry, entry_hash
from audit.domain.mapping import LogRow, LogSettings, to_log_row
from audit.domain.siem import SiemTemplate, siem_document, siem_template
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.audit import AUDIT_LOG_TOPIC, AuditLogRecorded
from misp_contracts.events.settings import SettingChanged
from misp_platform import tracing
from misp_platform.auth.principals import PRINCIPAL_HANDLERS, project_principals
from misp_platform.outbox import OutboxRow, OutgoingMessage, copy_messages
from misp_platform.server_settings import named, read_settings, record_setting

log = structlog.get_logger(__name__)

LOGGING_SETTINGS = ("MISP.log_auth", "MISP.log_client_ip", "Security.do_not_log_authkeys")
UNPARTITIONED = "unpartitioned"
# Deterministic SIEM message ids: a replayed entry keeps the id a SIEM may deduplicate on.
SIEM_NAMESPACE = uuid.UUID("5b0b7a4e-2f44-4c55-9d0e-6a1d2c9f3e10")
INT_MAX = 2**63 - 1
SIEM_CHUNK = 100  # SIEM records built between two turns of the log rows' COPY


@dataclass(frozen=True)
class Source:
    """Where an event was read: its partition is its chain."""

    topic: str
    partition: int
    offset: int

    @property
    def chain(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True)
class Options:
    tables: LogTables = LIVE
    publish: bool = True  # queue SIEM records (a rebuild does not re-send them)
    principals: bool = True  # feed the principals projection too (only the live consumer)
    siem_topic: str = AUDIT_LOG_TOPIC
    # Where the logging settings live: a rebuild replays them into its own copy, so each event
    # is logged under the settings of its time, as the live consumer did.
    settings_table: str = SETTINGS_TABLE


async def load_log_settings(conn: AsyncConnection,
                            table: str = SETTINGS_TABLE) -> LogSettings:
    return LogSettings.from_values(
        await read_settings(conn, LOGGING_SETTINGS, table=named(table)))


def _clean(value: Any) -> Any:
    """What PostgreSQL can store (no NUL characters) and reads back the same."""
    if type(value) is str:  # the usual case first
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
        return str(value)
    return value


def _bounded(value: int | None) -> int:
    return value if value is not None and 0 <= value <= INT_MAX else 0


def _opt_bounded(value: int | None) -> int | None:
    return value if value is not None and 0 <= value <= INT_MAX else None


SiemParts = tuple[SiemTemplate, Headers, Headers]  # a record but for its entry's id and place


@dataclass
class PreparedRows:
    """Log rows (and what of their SIEM records they decide) mapped ahead of their batch: the
    live consumer maps the next batch while it writes this one, under the logging settings the
    batch before ended with. A row mapped under other settings than its batch finds is mapped
    again."""

    settings: LogSettings | None = None
    rows: dict[str, tuple[LogSettings, LogRow | None, SiemParts | None]] = field(
        default_factory=dict)

    def prepare(self, envelope: Envelope) -> None:
        if self.settings is None:
            return
        row = to_log_row(envelope, self.settings)
        # A row without an org id may get its user's (_with_user_orgs): its record waits.
        siem = (_siem_parts(row, envelope) if row is not None and row.org_id is not None
                and not tracing.enabled() else None)
        self.rows[envelope.id] = (self.settings, row, siem)

    def take(self, envelope: Envelope,
             settings: LogSettings) -> tuple[LogRow | None, SiemParts | None]:
        ready = self.rows.pop(envelope.id, None)
        if ready is not None and ready[0] == settings:
            return ready[1], ready[2]
        return to_log_row(envelope, settings), None

    def forget(self, event_id: str) -> None:
        self.rows.pop(event_id, None)


async def project(conn: AsyncConnection, items: Sequence[tuple[Envelope, Source | None]],
                  options: Options = Options(),
                  prepared: PreparedRows | None = None) -> list[Entry]:
    """Write the Log rows of these events (in order) and return the entries written
    (`prepared`: rows mapped ahead, and where the settings this batch ended with are left)."""
    tables = options.tables
    ids = [e.id for e, _ in items]
    seen = await logged_event_ids(conn, tables, ids)
    settings = await load_log_settings(conn, options.settings_table)
    ready = prepared if prepared is not None else PreparedRows()
    pending: list[tuple[Envelope, Source | None, LogRow]] = []
    siem_parts: dict[str, SiemParts] = {}
    principals: list[Envelope] = []
    for envelope, source in items:
        if envelope.id in seen:
            ready.forget(envelope.id)
            continue  # already logged (a replay after the processed mark was lost)
        seen.add(envelope.id)
        if options.principals and envelope.type in PRINCIPAL_HANDLERS:
            principals.append(envelope)
        row, siem = ready.take(envelope, settings)
        if siem is not None:
            siem_parts[envelope.id] = siem
        if envelope.type == SettingChanged.type:
            change = SettingChanged.model_validate(envelope.data)
            if change.name in LOGGING_SETTINGS:
                await record_setting(conn, change.name, change.value, envelope.streamversion,
                                     table=named(options.settings_table))
                settings = await load_log_settings(conn, options.settings_table)
        if row is not None:
            pending.append((envelope, source, row))
    ready.settings = settings
    if principals:  # a run of saves is one statement, with one NOTIFY for the batch
        await project_principals(conn, principals)
    if not pending:
        return []
    pending = await _with_user_orgs(conn, pending)

    chains = sorted({s.chain if s else UNPARTITIONED for _, s, _ in pending})
    heads = await lock_chain_heads(conn, tables, chains)
    new_ids = await next_entry_ids(conn, tables, len(pending))
    entries: list[Entry] = []
    rows: list[tuple[Entry, int | None]] = []
    for (envelope, source, row), entry_id in zip(pending, new_ids, strict=True):
        chain = source.chain if source else UNPARTITIONED
        seq, prev = heads[chain]
        created = row.created if row.created.tzinfo else row.created.replace(tzinfo=UTC)
        entry = Entry(
            id=entry_id, source_event_id=envelope.id, source_type=_clean(envelope.type),
            chain=chain, seq=seq + 1, prev_hash=prev, hash="", created=created,
            model=_clean(row.model), model_id=_bounded(row.model_id), action=_clean(row.action),
            user_id=_bounded(row.user_id), title=_clean(row.title), change=_clean(row.change),
            email=_clean(row.email), org=_clean(row.org), description=_clean(row.description),
            ip=_clean(row.ip), org_id=_opt_bounded(row.org_id),
            authkey_id=_opt_bounded(row.authkey_id),
            request_id=_clean(row.request_id), request_type=row.request_type,
            change_json=_clean(row.change_json))
        entry = entry._replace(hash=entry_hash(entry))
        heads[chain] = (entry.seq, entry.hash)
        entries.append(entry)
        rows.append((entry, source.offset if source else None))
    # The server writes the rows (and their indexes) while the SIEM records are built here.
    copying = asyncio.ensure_future(insert_entries(conn, tables, rows))
    try:
        messages = []
        if options.publish:
            for i, (entry, (envelope, _source, row)) in enumerate(
                    zip(entries, pending, strict=True)):
                if i % SIEM_CHUNK == 0:
                    await asyncio.sleep(0)  # the COPY sends what the socket takes meanwhile
                messages.append(_siem_message(entry, row, envelope, options.siem_topic,
                                              siem_parts.get(envelope.id)))
    finally:
        await copying  # the connection is free again (its error, if any, raised here)
    await update_chain_heads(conn, tables, heads)
    if messages:
        await copy_messages(conn, messages)
    return entries


async def _with_user_orgs(conn: AsyncConnection,
                          pending: list[tuple[Envelope, Source | None, LogRow]],
                          ) -> list[tuple[Envelope, Source | None, LogRow]]:
    """A row whose actor carries no org id but that names a user (a failed authentication,
    logged by the system) gets that user's org id from the principals projection: org admins
    see their org's rows by id, never by a name that can change or repeat."""
    wanted = {r.user_id for _e, _s, r in pending if r.org_id is None and 0 < r.user_id <= INT_MAX}
    if not wanted:
        return pending
    orgs = await org_ids_of_users(conn, sorted(wanted))
    return [(e, s, replace(r, org_id=orgs[r.user_id]) if r.org_id is None and r.user_id in orgs
             else r) for e, s, r in pending]


def _siem_parts(row: LogRow, source: Envelope) -> SiemParts:
    """What of an event's SIEM record its Log row and envelope decide: the document but the
    entry's id and chain link, the headers but the subject (the entry's id)."""
    created = row.created if row.created.tzinfo else row.created.replace(tzinfo=UTC)
    before, after = encode_headers(
        id=str(uuid.uuid5(SIEM_NAMESPACE, source.id)), source="/audit",
        type=AuditLogRecorded.type, time=created,
        correlationid=source.correlationid or source.id, causationid=source.id,
        actor=_siem_actor(row, source))
    return siem_template(row, created), before, after


def _siem_actor(row: LogRow, source: Envelope) -> dict[str, Any]:
    actor = source.actor if isinstance(source.actor, Actor) else Actor()
    if row.ip is None and actor.client_ip is not None:  # MISP.log_client_ip is off
        return {**actor.__dict__, "client_ip": None}
    return actor.__dict__


def _siem_message(entry: Entry, row: LogRow, source: Envelope, topic: str,
                  parts: SiemParts | None = None) -> OutboxRow:
    """The entry's SIEM record for the outbox (`parts`: `_siem_parts`, made ahead)."""
    if tracing.enabled():  # the record carries the active span's trace context
        fields: dict[str, Any] = {
            "id": str(uuid.uuid5(SIEM_NAMESPACE, entry.source_event_id)), "source": "/audit",
            "type": AuditLogRecorded.type, "subject": str(entry.id), "time": entry.created,
            "correlationid": source.correlationid or source.id, "causationid": source.id,
            "data": siem_document(entry, row)}
        envelope = Envelope(**fields, actor=Actor(**_siem_actor(row, source)))
        return OutboxRow.of(OutgoingMessage.of(envelope, topic=topic, key=str(entry.id)))
    template, before, after = parts if parts is not None else _siem_parts(row, source)
    subject = str(entry.id)
    return OutboxRow(topic, subject, with_subject(before, subject, after),
                     orjson.dumps(siem_document(entry, row, template)))
