"""Scheduled tasks: the next run of a schedule, and what a tick does after downtime and while a
previous run is still going (catch-up and overlap policies, after Temporal's schedules).

Pure: the time is an argument (tests use a fake clock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobs.domain.errors import JobValidationError
from misp_contracts.events.jobs import CATCH_UP_POLICIES, JOB_TYPES, OVERLAP_POLICIES, TaskState

HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def interval_of(task: TaskState) -> timedelta | None:
    """The period of a recurring task; None for a task that runs once (timer 0)."""
    seconds = task.interval_s if task.interval_s else task.timer * 3600
    return timedelta(seconds=seconds) if seconds > 0 else None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise JobValidationError({"timezone": [f"Unknown time zone: {name}"]}) from exc


def first_run(task: TaskState, now: datetime, on_day: date | None = None) -> datetime:
    """The first time at `scheduled_time` (in the task's zone) on `on_day` or after `now`."""
    hh, mm = (int(x) for x in task.scheduled_time.split(":"))
    tz = zone(task.timezone)
    local_now = now.astimezone(tz)
    day = on_day or local_now.date()
    candidate = datetime.combine(day, time(hh, mm), tzinfo=tz)
    if on_day is None and candidate <= local_now:
        candidate = datetime.combine(day + timedelta(days=1), time(hh, mm), tzinfo=tz)
    return candidate.astimezone(UTC)


def validate(task: TaskState) -> TaskState:
    """Refuse a bad schedule before anything is written (nothing is half-scheduled)."""
    errors: dict[str, list[str]] = {}
    if task.type not in JOB_TYPES:
        errors.setdefault("type", []).append(f"Unknown task type: {task.type}")
    if not HHMM.match(task.scheduled_time):
        errors.setdefault("scheduled_time", []).append(
            "Invalid scheduled time: use HH:MM (24h), e.g. 01:30")
    if task.timer < 0 or (task.interval_s is not None and task.interval_s < 0):
        errors.setdefault("timer", []).append("The frequency cannot be negative")
    if task.overlap not in OVERLAP_POLICIES:
        errors.setdefault("overlap", []).append(f"Use one of {', '.join(OVERLAP_POLICIES)}")
    if task.catch_up not in CATCH_UP_POLICIES:
        errors.setdefault("catch_up", []).append(f"Use one of {', '.join(CATCH_UP_POLICIES)}")
    if task.catch_up_max < 1:
        errors.setdefault("catch_up_max", []).append("catch_up_max must be at least 1")
    try:
        zone(task.timezone)
    except JobValidationError as exc:
        errors.update(exc.errors)
    if task.queue is not None and task.type in JOB_TYPES \
            and task.queue not in JOB_TYPES[task.type].queues:
        errors.setdefault("queue", []).append(f"Job type {task.type} does not run in {task.queue}")
    if errors:
        raise JobValidationError(errors)
    return task


@dataclass(frozen=True)
class TickPlan:
    """What the scheduler does for a due task."""

    runs: int  # how many jobs to queue now
    next_at: datetime | None
    outcome: str
    message: str


def plan_tick(task: TaskState, due_at: datetime, now: datetime, *,
              active_runs: int) -> TickPlan:
    """The runs due at or before `now`, counted from `due_at` (the task's next execution)."""
    every = interval_of(task)
    missed = 1
    next_at: datetime | None = None
    if every is not None:
        behind = now - due_at
        missed = 1 + int(behind / every) if behind >= timedelta(0) else 1
        next_at = due_at + every * missed
    runs = missed
    outcome = "queued"
    if missed > 1:
        if task.catch_up == "skip":
            # The runs missed during downtime are dropped; the one due now still runs if it is
            # within one period (otherwise it is a missed one too).
            runs = 1 if now - (due_at + every * (missed - 1)) < every / 2 else 0  # type: ignore[operator]
            outcome = "queued" if runs else "skipped-missed"
        elif task.catch_up == "run_once":
            runs = 1
        else:
            runs = min(missed, task.catch_up_max)
    if runs and active_runs:
        if task.overlap == "skip":
            runs, outcome = 0, "skipped-overlap"
        elif task.overlap == "buffer_one":
            runs = 1 if active_runs < 2 else 0
            outcome = "queued" if runs else "skipped-overlap"
    message = {
        "queued": f"Queued at {now:%Y-%m-%d %H:%M:%S} ({runs} run{'s' if runs != 1 else ''})",
        "skipped-overlap": f"Skipped at {now:%Y-%m-%d %H:%M:%S}: the previous run is not done",
        "skipped-missed": f"Skipped {missed} missed run(s) at {now:%Y-%m-%d %H:%M:%S}",
    }[outcome]
    return TickPlan(runs=runs, next_at=next_at, outcome=outcome, message=message)
