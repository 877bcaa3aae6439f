"""Scheduled tasks: setTask, pause, trigger now, and the scheduler's tick.

A tick claims `(task, due time)` in `task_tick` (unique) in the transaction that queues the
jobs and appends `TaskTicked`: with several schedulers running, each tick happens exactly once,
and a scheduler killed mid-tick leaves nothing behind (its transaction is rolled back).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters import queries, store
from jobs.domain import schedule
from jobs.domain.errors import JobNotFoundError
from jobs.handlers.jobs import enqueue
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import changes_between, decode
from misp_contracts.events.jobs import (
    TaskPaused,
    TaskScheduled,
    TaskState,
    TaskTicked,
)
from misp_platform import failpoints


async def set_task(conn: AsyncConnection, task_id: int | None, fields: dict[str, Any],
                   actor: Actor, now: datetime, next_day: Any = None) -> TaskState:
    """Create (task_id None) or change a task's schedule; validated before anything is written."""
    current = await store.load_task(conn, task_id, lock=True) if task_id is not None else None
    if task_id is not None and current is None:
        raise JobNotFoundError(f"Invalid task: {task_id}")
    base = current[0].model_dump() if current else {"id": 0, "type": fields.get("type", "")}
    merged = {**base, **{k: v for k, v in fields.items() if v is not None}}
    state = schedule.validate(TaskState.model_validate(merged))
    if state.id == 0:
        state = state.model_copy(update={"id": await store.next_task_id(conn)})
    state = state.model_copy(update={
        "next_execution_at": schedule.first_run(state, now, next_day)})
    before = current[0].model_dump(mode="json") if current else {}
    changes = changes_between(before, state.model_dump(mode="json"))
    changes.pop("next_execution_at", None) if not current else None
    await store.save_task(conn, state, current[1] if current else 0,
                          [TaskScheduled(task=state, changes=changes)], actor,
                          message="Not scheduled yet." if current is None else
                          f"Scheduled for {state.next_execution_at:%Y-%m-%d %H:%M:%S} UTC")
    return state


async def pause(conn: AsyncConnection, task_id: int, paused: bool, actor: Actor) -> TaskState:
    current = await store.load_task(conn, task_id, lock=True)
    if current is None:
        raise JobNotFoundError(f"Invalid task: {task_id}")
    state = current[0].model_copy(update={"paused": paused})
    await store.save_task(conn, state, current[1], [TaskPaused(task_id=task_id, paused=paused)],
                          actor)
    return state


async def trigger(conn: AsyncConnection, task_id: int, actor: Actor, now: datetime) -> int:
    """Run the task now, outside its schedule (the schedule is unchanged)."""
    current = await store.load_task(conn, task_id, lock=True)
    if current is None:
        raise JobNotFoundError(f"Invalid task: {task_id}")
    state, version = current
    job_id = await enqueue(conn, job_type=state.type, queue=state.queue, actor=actor,
                           task_id=task_id, job_input=f"Task:{task_id}")
    message = f"Triggered at {now:%Y-%m-%d %H:%M:%S} by {actor.email or 'system'}"
    await store.save_task(conn, state, version, [TaskTicked(
        task_id=task_id, due_at=now, outcome="triggered", job_ids=[job_id],
        next_execution_at=state.next_execution_at, message=message)], actor,
        message=message, last_outcome="triggered", last_job_id=job_id, last_run_at=now)
    return job_id


async def tick(conn: AsyncConnection, task_id: int, due_at: datetime, now: datetime,
               scheduler_id: str) -> TaskTicked | None:
    """Handle the run of `task_id` due at `due_at`, unless another scheduler already did."""
    if not await store.claim_tick(conn, task_id, due_at, now, scheduler_id):
        return None
    failpoints.hit("scheduler.after_claim")
    current = await store.load_task(conn, task_id, lock=True)
    if current is None:
        return None
    state, version = current
    if state.next_execution_at != due_at or state.paused:
        return None  # changed since it was read: the claim is for a time no longer due
    plan = schedule.plan_tick(state, due_at, now,
                              active_runs=await queries.active_runs_of_task(conn, task_id))
    job_ids = [await enqueue(conn, job_type=state.type, queue=state.queue, actor=Actor.system(),
                             task_id=task_id, job_input=f"Task:{task_id}")
               for _ in range(plan.runs)]
    ticked = TaskTicked(task_id=task_id, due_at=due_at, outcome=plan.outcome, job_ids=job_ids,
                        next_execution_at=plan.next_at, message=plan.message)
    new_state = state.model_copy(update={"next_execution_at": plan.next_at})
    await store.save_task(conn, new_state, version, [ticked], Actor.system(),
                          message=plan.message, last_outcome=plan.outcome,
                          last_job_id=job_ids[-1] if job_ids else None, last_run_at=now)
    await store.record_tick_outcome(conn, task_id, due_at, plan.outcome)
    failpoints.hit("scheduler.before_commit")
    return ticked


def as_ticked(envelope: Envelope) -> TaskTicked | None:
    event = decode(envelope.type, envelope.data)
    return event if isinstance(event, TaskTicked) else None


def utcnow() -> datetime:
    return datetime.now(UTC)


# MISP ships its tasks pre-defined and unscheduled; these are this platform's.
SEEDED_TYPES = ("audit_verify", "audit_prune", "purge_expired_sessions", "settings_diagnostics")
# Seeded with a schedule: (every N hours, at HH:MM UTC). The expiry warnings must not wait for an
# administrator to remember them.
SEEDED_SCHEDULES = {"authkey_expiry_warnings": (24.0, "06:00")}


async def seed_tasks(conn: AsyncConnection) -> list[int]:
    """One task per seeded type that has none yet (first run, idempotent)."""
    await store.lock_task_seeding(conn)
    have = await queries.task_types(conn)
    made = []
    for type_ in (*SEEDED_TYPES, *SEEDED_SCHEDULES):
        if type_ in have:
            continue
        state = TaskState(id=await store.next_task_id(conn), type=type_, timer=0)
        if type_ in SEEDED_SCHEDULES:
            hours, at = SEEDED_SCHEDULES[type_]
            state = state.model_copy(update={"timer": hours, "scheduled_time": at})
            state = state.model_copy(update={
                "next_execution_at": schedule.first_run(state, utcnow())})
        await store.save_task(conn, state, 0, [TaskScheduled(task=state)], Actor.system())
        made.append(state.id)
    return made
