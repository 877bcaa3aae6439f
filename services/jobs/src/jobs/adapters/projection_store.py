"""Writes of the `job` and `job_attempt` read models, as the projection (jobs.projections.project)
decides them, in the caller's transaction: those of a run of events through `Writes`, in as few
statements as their order allows (a re-run's attempt row, `add_job_attempt`, on its own); the
rows of queued jobs and of their first attempts in one statement, whatever their number."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import job, job_attempt
from jobs.domain.model import stream_id_of
from misp_contracts.events.jobs import JobState
from misp_platform import outbox
from misp_platform.outbox import OutgoingMessage

# The rows of queued jobs and of their first attempts, from one JSON parameter: one statement
# (one round trip, one parse) for any number of jobs; with their dispatches queued in the
# outbox (outbox.INSERT_ROWS_SQL) when there are some.
_JOBS_AND_ATTEMPTS = """
    WITH r AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            id bigint, stream_id uuid, version int, queue text, job_type text, job_input text,
            status int, retries int, attempt int, max_attempts int, message text, progress int,
            org_id bigint, task_id bigint, request_id text, data jsonb,
            date_created timestamptz, date_modified timestamptz)
    ), jobs AS (
        INSERT INTO job (id, stream_id, version, queue, job_type, job_input, status, retries,
                         attempt, max_attempts, message, progress, org_id, task_id, request_id,
                         data, date_created, date_modified)
        SELECT id, stream_id, version, queue, job_type, job_input, status, retries, attempt,
               max_attempts, message, progress, org_id, task_id, request_id, data,
               date_created, date_modified
        FROM r
    ), attempts AS (
        INSERT INTO job_attempt (job_id, attempt, queued_at) SELECT id, 1, date_created FROM r
    )
"""
_INSERT_JOBS_AND_ATTEMPTS = text(_JOBS_AND_ATTEMPTS + "SELECT count(*) FROM r")
_INSERT_JOBS_ATTEMPTS_AND_DISPATCHES = text(_JOBS_AND_ATTEMPTS + outbox.INSERT_ROWS_SQL)


async def add_job_attempt(conn: AsyncConnection, job_id: int, attempt: int,
                          now: datetime) -> None:
    """The row of a queued attempt, unless the attempt has one already."""
    await conn.execute(pg_insert(job_attempt).values(
        job_id=job_id, attempt=attempt, queued_at=now).on_conflict_do_nothing())


class Writes:
    """The row updates of a run of events, kept back and sent together: consecutive updates of
    one table with the same columns, each to a row not already waiting, go in one executemany
    (one round trip). A row updated again, or other columns, first sends what waits for that
    table, so each row sees its updates in order."""

    def __init__(self, conn: AsyncConnection, messages: Sequence[OutgoingMessage] = ()) -> None:
        self.conn = conn
        # Outbox messages sent with the next queued jobs' rows (or at the flush if none come).
        self.messages = list(messages)
        # By table: the shape of the waiting updates, their parameters and the rows they touch.
        self.waiting: dict[str, tuple[Any, list[dict[str, Any]], set[Any]]] = {}
        # The first attempts whose rows wait with their jobs' (in the `job` table's insert).
        self.new_attempts: set[tuple[int, int]] = set()

    async def insert_job_view(self, state: JobState, *, version: int, now: datetime) -> None:
        """The row of a queued job and of its first attempt (sent together)."""
        if "job_attempt" in self.waiting:
            await self._send("job_attempt")  # attempt rows updated before: sent before
        await self._add("job", ("insert_job",), state.id, dict(
            id=state.id, stream_id=stream_id_of(state.id), version=version, queue=state.queue,
            job_type=state.job_type, job_input=state.job_input, status=state.status, retries=0,
            attempt=state.attempt, max_attempts=state.max_attempts, message=state.message,
            progress=0, org_id=state.org_id, task_id=state.task_id,
            request_id=state.request_id, data=state.data, date_created=now, date_modified=now))
        self.new_attempts.add((state.id, 1))

    async def update_job_view(self, job_id: int, values: dict[str, Any], *,
                              count_retry: bool = False) -> None:
        shape = ("job", tuple(sorted(values)), count_retry)
        await self._add("job", shape, job_id,
                        {"k_job_id": job_id, **{f"v_{k}": v for k, v in values.items()}})

    async def update_job_attempt(self, job_id: int, attempt: int, values: dict[str, Any], *,
                                 unfinished_only: bool) -> None:
        if (job_id, attempt) in self.new_attempts:
            await self._send("job")  # its row is inserted with the job's: first
        shape = ("attempt", tuple(sorted(values)), unfinished_only)
        await self._add("job_attempt", shape, (job_id, attempt),
                        {"k_job_id": job_id, "k_attempt": attempt,
                         **{f"v_{k}": v for k, v in values.items()}})

    async def _add(self, table: str, shape: Any, row: Any, params: dict[str, Any]) -> None:
        held = self.waiting.get(table)
        if held is not None and (held[0] != shape or row in held[2]):
            await self._send(table)
            held = None
        if held is None:
            held = self.waiting[table] = (shape, [], set())
        held[1].append(params)
        held[2].add(row)

    async def flush(self) -> None:
        for table in list(self.waiting):
            await self._send(table)
        if self.messages:
            await outbox.enqueue_messages(self.conn, self.messages)
            self.messages = []

    async def _send(self, table: str) -> None:
        shape, params, _ = self.waiting.pop(table)
        if shape == ("insert_job",):
            rows = orjson.dumps(params, option=orjson.OPT_NON_STR_KEYS).decode()
            if self.messages:
                result = await self.conn.execute(_INSERT_JOBS_ATTEMPTS_AND_DISPATCHES, {
                    "rows": rows, "messages": outbox.messages_json(self.messages)})
                outbox.note_written(row[0] for row in result)
                self.messages = []
            else:
                await self.conn.execute(_INSERT_JOBS_AND_ATTEMPTS, {"rows": rows})
            self.new_attempts.clear()
            return
        kind, columns, flag = shape
        values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in columns}
        if kind == "job":
            if flag:
                values["retries"] = job.c.retries + 1
            stmt = update(job).where(job.c.id == bindparam("k_job_id")).values(**values)
        else:
            stmt = update(job_attempt).where(job_attempt.c.job_id == bindparam("k_job_id"),
                                             job_attempt.c.attempt == bindparam("k_attempt"))
            if flag:
                stmt = stmt.where(job_attempt.c.finished_at.is_(None))
            stmt = stmt.values(**values)
        await self.conn.execute(stmt, params)
