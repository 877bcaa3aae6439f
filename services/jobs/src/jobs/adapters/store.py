"""The job and task streams in the event store, and the projection written with each append."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import job_id_seq, jobs_instance, task_id_seq
from jobs.domain.model import Job, replay, stream_id_of
from jobs.projections import project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent, decode
from misp_platform.eventstore import EventStore

store = EventStore("jobs")
_instance_ids: dict[str, str] = {}


async def instance_id(conn: AsyncConnection) -> str:
    """This deployment's id (`jobs_instance`), read once per database."""
    key = str(conn.engine.url)
    if key not in _instance_ids:
        _instance_ids[key] = str((await conn.execute(select(jobs_instance.c.id))).scalar_one())
    return _instance_ids[key]


async def next_job_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(job_id_seq.next_value()))).scalar_one())


async def next_task_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(task_id_seq.next_value()))).scalar_one())


async def load_job(conn: AsyncConnection, job_id: int) -> Job | None:
    stored = await store.load(conn, stream_id_of(job_id))
    events = [e for e in (decode(s.type, s.data) for s in stored) if e is not None]
    job = replay(events)
    return None if job is None else replace(job, version=stored[-1].version)


async def save_job(conn: AsyncConnection, job_id: int, version: int,
                   events: Sequence[DomainEvent], actor: Actor, *,
                   cause: Envelope | None = None,
                   now: datetime | None = None) -> list[Envelope]:
    """Append to the job's stream and update the read model: one transaction (the caller's)."""
    if not events:
        return []
    envelopes = await store.append(
        conn, stream_id=stream_id_of(job_id), stream_type="job", expected_version=version,
        events=events, actor=actor,
        correlation_id=(cause.correlationid or cause.id) if cause else None,
        causation_id=cause.id if cause else None)
    await project.apply_job_events(conn, envelopes, now or datetime.now(UTC))
    return envelopes
