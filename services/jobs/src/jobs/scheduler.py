"""`python -m jobs scheduler`: ticks due tasks, dispatches due retries and fails the jobs of
dead workers. Run two or more for high availability: the claims make every tick happen once.

Each scheduler records a beat every `beat_s` (and its stop) in `scheduler`: `servers/getWorkers`
lists the schedulers under MISP's `scheduler` queue, and the diagnostics are degraded when none
is alive, so a scheduler that stops is seen instead of going silent.

Metrics (on the ops port): its rounds by outcome, the ticks it ran, and every `gauges_s` the jobs
waiting and the workers alive per queue (what the diagnostics' worker check reads)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import queries, store
from jobs.handlers import jobs as job_handlers
from jobs.handlers import tasks
from misp_contracts.events.jobs import QUEUES
from misp_platform import metrics

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(self, engine: AsyncEngine, *, poll_s: float = 0.2,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 missed_beats: float = 3.0, beat_s: float = 2.0, gauges_s: float = 10.0) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.clock = clock
        self.missed_beats = missed_beats
        self.beat_s = beat_s
        self.gauges_s = gauges_s
        self.scheduler_id = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = datetime.now(UTC)
        self._last_beat: float | None = None
        self._last_gauges: float | None = None

    async def beat(self) -> None:
        """Record that this scheduler is alive (its own row, one statement)."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await store.record_scheduler_beat(
                conn, self.scheduler_id, started_at=self.started_at, host=socket.gethostname(),
                pid=os.getpid(), interval_s=self.beat_s, at=now)

    async def _beat_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last_beat is None or loop.time() - self._last_beat >= self.beat_s:
            await self.beat()
            self._last_beat = loop.time()

    async def count_queues(self) -> None:
        """Set the waiting jobs and the live workers of every queue (0 where none)."""
        async with self.engine.connect() as conn:
            alive = await queries.alive_workers_per_queue(conn, datetime.now(UTC),
                                                          job_handlers.HEARTBEAT_GRACE_S)
            waiting = await queries.waiting_jobs_per_queue(conn)
        for queue in {*QUEUES, *alive, *waiting}:
            metrics.jobs_workers_alive.labels(queue).set(alive.get(queue, 0))
            metrics.jobs_waiting.labels(queue).set(waiting.get(queue, 0))

    async def _count_queues_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last_gauges is None or loop.time() - self._last_gauges >= self.gauges_s:
            self._last_gauges = loop.time()
            try:
                await self.count_queues()
            except Exception as exc:  # the gauges wait for the next time; the round was done
                log.warning("scheduler.queues_not_counted", error=f"{type(exc).__name__}: {exc}")

    async def _record_stop(self) -> None:
        async with self.engine.begin() as conn:
            await store.record_scheduler_stop(conn, self.scheduler_id, datetime.now(UTC))

    async def run_once(self) -> int:
        now = self.clock()
        done = 0
        async with self.engine.connect() as conn:
            due = await queries.due_tasks(conn, now)
        for task_id, due_at in due:
            async with self.engine.begin() as conn:
                if await tasks.tick(conn, task_id, due_at, now, self.scheduler_id):
                    done += 1
        async with self.engine.begin() as conn:
            await job_handlers.dispatch_due_retries(conn, now)
        async with self.engine.begin() as conn:
            await job_handlers.fail_jobs_of_dead_workers(conn, now, self.missed_beats)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        log.info("scheduler.started", scheduler_id=self.scheduler_id)
        while not stop.is_set():
            try:
                await self._beat_when_due()
                metrics.scheduler_ticks_total.inc(await self.run_once())
            except Exception as exc:  # a lost race or a restarting database: next round
                metrics.scheduler_rounds_total.labels("failed").inc()
                log.warning("scheduler.round_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                metrics.scheduler_rounds_total.labels("ok").inc()
                await self._count_queues_when_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
        try:
            await self._record_stop()
        except Exception as exc:  # the database may be gone: the missed beats tell the same
            log.warning("scheduler.stop_not_recorded", error=f"{type(exc).__name__}: {exc}")
        log.info("scheduler.stopped", scheduler_id=self.scheduler_id)
