"""A background-job worker that any service can run for one queue (`python -m <service> worker
<queue>`): it reads the run topic of (service, queue), runs each job with the handler of its
type, and reports start, progress and outcome on `misp.jobs.worker.v1`, with heartbeats so that
the jobs service notices a dead worker. Progress, outcomes and heartbeats go through the
service's outbox; the claims go straight to Kafka (below).

A worker runs a job only once the jobs service grants its claim: it reports the start
(`JobRunStarted`), and the jobs service, taking turns with cancels on the job, answers
`JobRunGranted` or `JobRunRefused` on the control topic. A job cancelled while it waited (or whose
attempt is stale) is refused and never runs.

A claim has no state of the worker's to be written with, so the worker's producer (one per
`run`, idempotent, acks=all, the service's Kafka principal) sends it to the worker topic itself,
the record the outbox would have carried (same envelope, key and partition), and the offsets of
the jobs claimed are committed only once Kafka has acknowledged their claims: killed before,
the jobs are delivered again and claimed again; after, the claims are in Kafka. A claim Kafka
refuses leaves its job's offset uncommitted: the worker lets the job go and reads it again.

Effects are idempotent by job id: the handler runs in the transaction that records
`job_run(job_id)` and the outcome report; a job id already recorded is reported again, not redone.
The offset of a job is committed once its claim is in Kafka; a worker that dies later is found by
its missed heartbeats and the jobs service retries or fails the job. An answer may come twice
(the jobs service sends it straight to Kafka and through its outbox): the first one counts.

Claims are pipelined: a worker holds up to `prefetch` jobs at once (claimed, granted or running),
keeps claiming while it runs the granted ones, one at a time in the order their grants arrive,
so a job no longer waits a claim round trip behind the one before it; the granted jobs waiting
run back to back in one transaction, each in a savepoint (one commit for them all). Progress
reports are coalesced: a job reporting more often than every `progress_interval_s` sends only
the latest report at the next tick, and the last one lands in the transaction that finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope, from_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import (
    JOB_TYPES,
    WORKER_CONTROL_TOPIC,
    CancelJobRun,
    JobRunFinished,
    JobRunGranted,
    JobRunProgressed,
    JobRunRefused,
    JobRunStarted,
    RunJob,
    StopWorker,
    WorkerHeartbeat,
    WorkerRef,
    WorkerStopped,
    run_topic,
)
from misp_platform import failpoints, metrics, tracing
from misp_platform.kafka import client_options, commit_assigned, create_producer
from misp_platform.outbox import OutgoingMessage, enqueue_messages

log = structlog.get_logger(__name__)

worker_metadata = MetaData()

# One row per job id whose effect this service applied (in the effect's transaction).
job_run = Table(
    "job_run", worker_metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    Column("worker_id", String(64), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The outcome of the runs marked `running`, one row per run (executemany: one round trip).
_record_outcome = (job_run.update().where(job_run.c.job_id == bindparam("run_job_id"))
                   .values(outcome=bindparam("run_outcome"), message=bindparam("run_message")))


@dataclass
class _Reports:
    """What the runs of a back-to-back batch leave to write at its end, in its transaction:
    the outcomes of the runs that did their effect, and every run's report (one outbox write)."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)

    def outcome_of(self, job_id: int) -> tuple[str, str] | None:
        """The outcome and message of `job_id`'s run earlier in the batch, not written yet."""
        for o in self.outcomes:
            if o["run_job_id"] == job_id:
                return o["run_outcome"], o["run_message"]
        return None

    async def write(self, conn: AsyncConnection) -> None:
        if self.outcomes:
            await conn.execute(_record_outcome, self.outcomes)
        await enqueue_messages(conn, self.messages)


class JobCancelledError(Exception):
    """Raised by `JobContext.checkpoint()` once the job was cancelled: the run stops there."""


@dataclass
class JobContext:
    """What a job handler gets: the job, a way to report progress, the cancel flag."""

    job: RunJob
    report: Callable[[int, str], Awaitable[None]]
    cancelled: bool = False
    # The trace context of the request or reaction that enqueued the job (its RunJob's).
    traceparent: str | None = None
    tracestate: str | None = None

    async def progress(self, value: int, message: str = "") -> None:
        self.checkpoint()
        await self.report(value, message)

    def checkpoint(self) -> None:
        if self.cancelled:
            raise JobCancelledError("cancelled while running")


class CoalescedProgress:
    """A job's progress reports, sent at most once per `interval_s`: a report that comes
    sooner waits for the next tick, where only the latest one waiting is sent; `close` writes
    the last one still waiting in the transaction that records the job's outcome."""

    def __init__(self, engine: AsyncEngine,
                 send: Callable[[AsyncConnection, int, str], Awaitable[None]],
                 interval_s: float) -> None:
        self.engine = engine
        self.send = send
        self.interval_s = interval_s
        self.waiting: tuple[int, str] | None = None
        self.sent_at = time.monotonic()
        self.sent = 0
        self._tick: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # reports leave in the order they were made

    def restart(self) -> None:
        self.sent_at = time.monotonic()

    async def report(self, value: int, message: str) -> None:
        self.waiting = (value, message)
        due = self.sent_at + self.interval_s - time.monotonic()
        if due <= 0:
            await self._send_waiting()
        elif self._tick is None or self._tick.done():
            self._tick = asyncio.create_task(self._send_later(due))

    async def _send_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._send_waiting()
        except Exception as exc:  # the next report, or the outcome, carries it
            log.warning("worker.progress_not_sent", error=str(exc))

    async def _send_waiting(self) -> None:
        async with self._sending:
            report = self.waiting
            if report is None:
                return
            async with self.engine.begin() as conn:
                await self.send(conn, *report)
            self.sent_at = time.monotonic()
            self.sent += 1
            if self.waiting is report:
                self.waiting = None

    async def close(self, conn: AsyncConnection) -> None:
        """Stop the ticks and send the report still waiting, if any, in `conn`'s transaction."""
        if self._tick is not None and not self._tick.done():
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        async with self._sending:
            if self.waiting is not None:
                await self.send(conn, *self.waiting)
                self.sent += 1
                self.waiting = None


# A handler runs in the transaction that records the job as done; it returns the final message.
JobHandler = Callable[[AsyncConnection, JobContext], Awaitable[str | None]]

# One attempt of a job: (job id, attempt).
AttemptKey = tuple[int, int]


def attempt_key(job: RunJob) -> AttemptKey:
    return job.job_id, job.attempt


@dataclass
class WorkerRunner:
    service: str
    queue: str
    engine: AsyncEngine
    bootstrap_servers: str
    handlers: Mapping[str, JobHandler]
    heartbeat_s: float = 2.0
    group: str | None = None  # default: misp.<service>.worker.<queue>
    offset_reset: str = "earliest"
    # Jobs held at once (claimed, granted or running; those of a fetch are claimed in one
    # transaction, one offset commit): more keeps claims in flight while jobs run, faster for
    # short jobs; 1 is fairest for long ones (a held job waits for those before it).
    prefetch: int = 1
    # How long a fetch of the run or control topic may wait at the broker for data: the control
    # path's answers are waited for by held jobs.
    fetch_max_wait_ms: int = 50
    # A job reporting progress more often than this sends only the latest report at the next
    # tick (the last one lands with the job's outcome).
    progress_interval_s: float = 0.1
    # A worker holding several jobs runs the granted ones waiting back to back in one
    # transaction (a savepoint each), for up to this long: the outcome of one may wait for the
    # end of the one after it.
    back_to_back_s: float = 0.05
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:"
                                                   f"{uuid.uuid4().hex[:8]}")
    # How long a worker waits for the answer to a claim (a stopping one: how much longer)
    # before it gives the attempt up as failed (the jobs service retries it).
    answer_timeout_s: float = 60.0
    answer_timeout_on_stop_s: float = 10.0
    # How many cancels a worker remembers for attempts it may be sent later, the oldest
    # forgotten first: the memory spares a claim the jobs service would refuse anyway (a grant
    # and a cancel take turns on the job), so forgetting one loses nothing but that claim.
    cancels_remembered: int = 10_000
    succeeded: int = 0
    failed: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        wanted = {t.name for t in JOB_TYPES.values()
                  if t.owner == self.service and self.queue in t.queues}
        missing = wanted - set(self.handlers)
        if not wanted:
            raise ValueError(f"{self.service} runs no job type in the {self.queue} queue")
        if missing:
            raise ValueError(f"no handler for job types {sorted(missing)} of the {self.queue} "
                             "queue: this worker could not run every job it would receive")
        self.ref = WorkerRef(worker_id=self.worker_id, service=self.service, queue=self.queue,
                             host=socket.gethostname(), pid=os.getpid(), user=getpass.getuser())
        self.started_at = datetime.now(UTC)
        self.current: JobContext | None = None
        # The attempts cancelled ((job id, attempt); attempt None: every attempt of the job),
        # oldest first, at most `cancels_remembered` of them.
        self.cancelled_attempts: dict[tuple[int, int | None], None] = {}
        self.stop_requested = asyncio.Event()
        self.control_ready = asyncio.Event()
        # Everything below is by attempt, (job id, attempt): a worker may hold two attempts of
        # one job at once (attempt 1 still running when the jobs service, having failed it
        # over, dispatched attempt 2), and each is answered, run and let go on its own.
        # The answers awaited for the claims of this worker.
        self.answers: dict[AttemptKey, asyncio.Future[JobRunGranted | JobRunRefused]] = {}
        # The attempts this worker holds (claimed, granted or running), and when each claim is
        # given up unanswered (the loop's clock).
        self.holding: dict[AttemptKey, JobContext] = {}
        self.deadlines: dict[AttemptKey, float] = {}
        # The granted jobs, in the order their grants came, for the runner.
        self.runnable: asyncio.Queue[JobContext] = asyncio.Queue()
        self.room = asyncio.Event()  # set when a held job is let go
        self.progress: dict[AttemptKey, CoalescedProgress] = {}
        # The producer of the claims, while `run` runs.
        self.producer: AIOKafkaProducer | None = None

    def _message(self, event: DomainEvent, key: str) -> OutgoingMessage:
        envelope = Envelope(source=f"/{self.service}", type=event.type, subject=key,
                            actor=Actor.system(), data=event.model_dump(mode="json"))
        return OutgoingMessage.of(envelope, topic=event.topic, key=key)

    async def _publish(self, conn: AsyncConnection, event: DomainEvent, key: str) -> None:
        await enqueue_messages(conn, [self._message(event, key)])

    async def heartbeat(self) -> None:
        job_id = self.current.job.job_id if self.current else None
        async with self.engine.begin() as conn:
            await self._publish(conn, WorkerHeartbeat(
                worker=self.ref, job_id=job_id, at=datetime.now(UTC),
                interval_s=self.heartbeat_s), self.worker_id)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.heartbeat()
            except Exception as exc:  # the database may be restarting: try again next beat
                log.warning("worker.heartbeat_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)

    async def _control(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(**client_options(self.bootstrap_servers),
                                    enable_auto_commit=False,
                                    fetch_max_wait_ms=self.fetch_max_wait_ms)
        await consumer.start()
        try:
            tp = TopicPartition(WORKER_CONTROL_TOPIC, 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)  # from here on, every answer to our claims is seen
            self.control_ready.set()
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        if self._someone_elses_answer(record):
                            continue
                        try:
                            self.on_control(from_kafka(record.headers, record.value))
                        except Exception as exc:
                            log.warning("worker.bad_control_message", error=str(exc))
        finally:
            await consumer.stop()

    def _someone_elses_answer(self, record: Any) -> bool:
        """An answer to another worker's claim (keyed by that worker): not decoded at all."""
        type_ = next((v for k, v in record.headers if k == "ce_type"), b"").decode()
        return (type_ in (JobRunGranted.type, JobRunRefused.type) and record.key is not None
                and record.key != self.worker_id.encode())

    def on_control(self, envelope: Envelope) -> None:
        if envelope.type in (JobRunGranted.type, JobRunRefused.type):
            answer = (JobRunGranted if envelope.type == JobRunGranted.type
                      else JobRunRefused).model_validate(envelope.data)
            waiting = self.answers.get((answer.job_id, answer.attempt))
            if answer.worker_id == self.worker_id and waiting is not None \
                    and not waiting.done():
                waiting.set_result(answer)
                self._answered(answer)
        elif envelope.type == CancelJobRun.type:
            cancel = CancelJobRun.model_validate(envelope.data)
            self._remember_cancel((cancel.job_id, cancel.attempt))
            for held in self.holding.values():
                if self._is_cancelled(held.job):
                    held.cancelled = True
            if self.current and self._is_cancelled(self.current.job):
                self.current.cancelled = True
        elif envelope.type == StopWorker.type:
            stop = StopWorker.model_validate(envelope.data)
            if stop.requested_at < self.started_at:
                return  # meant for the process this one replaced
            if ((stop.worker_id and stop.worker_id != self.worker_id)
                    or (stop.pid is not None and stop.pid != self.ref.pid)
                    or (stop.queue and stop.queue != self.queue)):
                return
            log.info("worker.stop_requested", worker_id=self.worker_id)
            if stop.cancel_current and self.current:
                self.current.cancelled = True
            self.stop_requested.set()

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        topic = run_topic(self.service, self.queue)
        consumer = AIOKafkaConsumer(
            topic, **client_options(self.bootstrap_servers),
            group_id=self.group or f"misp.{self.service}.worker.{self.queue}",
            enable_auto_commit=False, auto_offset_reset=self.offset_reset,
            max_poll_records=max(1, self.prefetch),
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            metadata_max_age_ms=3000,
            # A job may run longer than a poll interval: the group must not evict us for it.
            max_poll_interval_ms=3_600_000)
        # Claims are awaited one fetch at a time: nothing to gain from lingering.
        producer = create_producer(self.bootstrap_servers, linger_ms=0)
        halt = asyncio.Event()
        side = [asyncio.create_task(self._heartbeats(halt)),
                asyncio.create_task(self._control(halt))]
        runner: asyncio.Task[None] | None = None
        reason = "stopped"
        try:
            await self._wait_control_ready(side[1])
            await producer.start()
            self.producer = producer
            await consumer.start()
            runner = asyncio.create_task(self._run_granted(stop))
            log.info("worker.started", worker_id=self.worker_id, topic=topic)
            while not stop.is_set() and not self.stop_requested.is_set():
                if runner.done():
                    runner.result()  # raise what stopped it
                room = max(1, self.prefetch) - len(self.holding)
                if room <= 0:
                    self.room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.room.wait(), 0.3)
                    continue
                batches = await consumer.getmany(timeout_ms=300, max_records=room)
                if ready is not None and not ready.is_set() and consumer.assignment():
                    for tp in consumer.assignment():
                        await consumer.position(tp)  # resolve "latest" before saying ready
                    ready.set()
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                try:
                    await self.take(records)
                except KafkaError as exc:  # not claimed: read again, claimed again
                    log.warning("worker.claims_not_sent", error=str(exc))
                    for tp, rs in batches.items():
                        consumer.seek(tp, rs[0].offset)
                    continue
                await self._commit(consumer, {tp: rs[-1].offset + 1 for tp, rs in batches.items()})
            if self.stop_requested.is_set():
                reason = "stop requested"
            # Stopping: the jobs in hand are answered (or given up) and the granted ones run.
            while self.holding and not runner.done():
                self.room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.room.wait(), 0.3)
            if runner.done():
                runner.result()
        finally:
            if runner is not None and not runner.done():
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            halt.set()
            await asyncio.gather(*side, return_exceptions=True)
            await consumer.stop()
            self.producer = None
            await producer.stop()
            try:
                async with self.engine.begin() as conn:
                    await self._publish(conn, WorkerStopped(worker=self.ref, reason=reason),
                                        self.worker_id)
            except Exception as exc:
                log.warning("worker.stop_report_failed", error=str(exc))
            log.info("worker.stopped", worker_id=self.worker_id, succeeded=self.succeeded,
                     failed=self.failed)

    async def _commit(self, consumer: AIOKafkaConsumer,
                      offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets of jobs claimed, for the partitions still assigned. A rebalance
        may take a partition while its jobs are claimed: their offsets are not committed, the
        next owner reads those jobs again and claims them again, and the jobs service grants
        the attempt again (its `job_run` mark keeps the effect once). Nothing to stop for."""
        error = await commit_assigned(consumer, offsets)
        if error is not None:
            log.warning("worker.commit_failed", worker_id=self.worker_id, error=str(error))

    async def _wait_control_ready(self, control: asyncio.Task[None]) -> None:
        ready = asyncio.create_task(self.control_ready.wait())
        await asyncio.wait({ready, control}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            control.result()  # raise what stopped the control consumer
            raise RuntimeError("the worker-control consumer stopped before it was ready")

    async def _run_granted(self, stop: asyncio.Event) -> None:
        """Run the granted jobs one at a time, in the order of their grants, while the claims
        of the next ones wait for their answers; give up the claims unanswered for too long."""
        while True:
            ctx: JobContext | None = None
            with contextlib.suppress(TimeoutError):
                ctx = await asyncio.wait_for(self.runnable.get(), 0.5)
            if ctx is None:
                await self._give_up_unanswered(stop)
                continue
            await self._run_back_to_back(ctx)

    async def _run_back_to_back(self, first: JobContext) -> None:
        """Run `first`, then the granted jobs already waiting (up to `prefetch`, for up to
        `back_to_back_s`), in one transaction, each job's effect and mark in a savepoint of its
        own, their outcomes and reports written together at the end: one commit for them all. A
        crash before the commit leaves none of them done; the jobs service fails them over and
        each runs once on its retry."""
        if self.prefetch <= 1:
            try:
                self.current = first
                await self.finish_current()
            finally:
                self.current = None
                self._let_go(attempt_key(first.job))
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        done: list[JobContext] = []
        try:
            async with self.engine.begin() as conn:
                reports = _Reports()
                ctx: JobContext | None = first
                while ctx is not None:
                    done.append(ctx)
                    self.current = ctx
                    await self.finish_current(conn, reports)
                    self.current = None
                    ctx = None
                    if (len(done) < self.prefetch and not self.runnable.empty()
                            and loop.time() - began < self.back_to_back_s):
                        ctx = self.runnable.get_nowait()
                await reports.write(conn)
        finally:
            self.current = None
            for ctx in done:
                self._let_go(attempt_key(ctx.job))

    def _let_go(self, key: AttemptKey) -> None:
        self.holding.pop(key, None)
        self.deadlines.pop(key, None)
        self.answers.pop(key, None)
        self.progress.pop(key, None)
        self.room.set()

    async def _give_up_unanswered(self, stop: asyncio.Event) -> None:
        """Claims unanswered for too long (a stopping worker: for `answer_timeout_on_stop_s`
        more) are reported failed: if one is granted later, that report ends the attempt and
        the job is retried."""
        now = asyncio.get_running_loop().time()
        stopping = stop.is_set() or self.stop_requested.is_set()
        for key, deadline in list(self.deadlines.items()):
            if stopping and deadline - now > self.answer_timeout_on_stop_s:
                self.deadlines[key] = deadline = now + self.answer_timeout_on_stop_s
            if deadline < now:
                ctx = self.holding[key]
                self._let_go(key)
                await self.report_unanswered(ctx)

    def _remember_cancel(self, key: tuple[int, int | None]) -> None:
        self.cancelled_attempts.pop(key, None)  # a cancel sent again is the newest
        self.cancelled_attempts[key] = None
        while len(self.cancelled_attempts) > self.cancels_remembered:
            del self.cancelled_attempts[next(iter(self.cancelled_attempts))]

    def _is_cancelled(self, job: RunJob) -> bool:
        return ((job.job_id, job.attempt) in self.cancelled_attempts
                or (job.job_id, None) in self.cancelled_attempts)

    def _answered(self, answer: JobRunGranted | JobRunRefused) -> None:
        """Queue a granted job for the runner; let a refused one go."""
        key = (answer.job_id, answer.attempt)
        ctx = self.holding.get(key)
        if ctx is None:
            return
        self.deadlines.pop(key, None)
        self.answers.pop(key, None)
        if isinstance(answer, JobRunRefused):
            self.refused += 1
            log.info("worker.claim_refused", job_id=answer.job_id, attempt=answer.attempt,
                     reason=answer.reason)
            self._let_go(key)
            return
        self.runnable.put_nowait(ctx)

    async def report_unanswered(self, ctx: JobContext) -> None:
        message = "the jobs service did not answer this worker's claim in time"
        log.warning("worker.claim_unanswered", job_id=ctx.job.job_id, attempt=ctx.job.attempt)
        self.failed += 1
        async with self.engine.begin() as conn:
            await self._publish(conn, JobRunFinished(
                worker=self.ref, job_id=ctx.job.job_id, attempt=ctx.job.attempt,
                outcome="failed", message=message), str(ctx.job.job_id))

    async def take(self, records: list[Any]) -> list[JobContext]:
        """Decode the RunJobs and claim them (before their offsets are committed): their claims
        sent to Kafka together, and acknowledged; each is held until its answer comes, and runs
        once granted. A KafkaError if a claim was not acknowledged (the jobs are let go)."""
        taken: list[JobContext] = []
        for record in records:
            try:
                envelope = from_kafka(record.headers, record.value)
                job = RunJob.model_validate(envelope.data)
            except Exception as exc:
                log.error("worker.undecodable_job", error=str(exc), offset=record.offset)
                continue
            if attempt_key(job) in self.holding:  # delivered again: the attempt is in hand
                continue
            taken.append(JobContext(job=job, report=self._reporter(job),
                                    cancelled=self._is_cancelled(job),
                                    traceparent=envelope.traceparent,
                                    tracestate=envelope.tracestate))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout_s
        for ctx in taken:
            key = attempt_key(ctx.job)
            self.answers[key] = loop.create_future()
            self.holding[key] = ctx
            self.deadlines[key] = deadline
        if taken:
            claims = [self._message(JobRunStarted(
                worker=self.ref, job_id=ctx.job.job_id, attempt=ctx.job.attempt,
                origin=ctx.job.origin), str(ctx.job.job_id)) for ctx in taken]
            try:
                await self._send(claims)
            except BaseException:
                for ctx in taken:
                    self._let_go(attempt_key(ctx.job))
                raise
        await failpoints.pause("worker.after_start")  # a test widens the claim -> commit gap
        failpoints.hit("worker.after_start")
        return taken

    async def _send(self, messages: list[OutgoingMessage]) -> None:
        """Send `messages` with the worker's producer and wait until Kafka has them all."""
        if self.producer is None:
            raise RuntimeError("the worker's producer runs only while the worker runs")
        deliveries = [await m.send(self.producer) for m in messages]
        await asyncio.gather(*deliveries)

    def _reporter(self, job: RunJob) -> Callable[[int, str], Awaitable[None]]:
        async def send(conn: AsyncConnection, value: int, message: str) -> None:
            await self._publish(conn, JobRunProgressed(
                worker=self.ref, job_id=job.job_id, attempt=job.attempt,
                progress=value, message=message), str(job.job_id))

        progress = CoalescedProgress(self.engine, send, self.progress_interval_s)
        self.progress[attempt_key(job)] = progress
        return progress.report

    async def finish_current(self, outer: AsyncConnection | None = None,
                             reports: _Reports | None = None) -> None:
        """Run the current job (or report the outcome already recorded), in a span that is the
        child of the trace context the job was enqueued in; in a transaction of its own, or in
        a savepoint of `outer`'s (its outcome and report then left in `reports`, which the
        caller writes in `outer` before the commit)."""
        ctx = self.current
        if ctx is None:
            return
        job = ctx.job
        with tracing.span(
                f"run {job.job_type}", kind=SpanKind.CONSUMER,
                parent=tracing.context_of(ctx.traceparent, ctx.tracestate),
                attributes={"misp.job.id": job.job_id, "misp.job.type": job.job_type,
                            "misp.job.queue": job.queue, "misp.job.attempt": job.attempt,
                            "messaging.system": "kafka", "messaging.operation.type": "process",
                            "messaging.destination.name": run_topic(self.service, self.queue)},
        ) as current:
            outcome = await self._finish(ctx, outer, reports)
            if current is not None:
                current.set_attribute("misp.job.outcome", outcome)
                if outcome != "succeeded":
                    current.set_status(StatusCode.ERROR, outcome)

    @contextlib.asynccontextmanager
    async def _transaction(self, outer: AsyncConnection | None
                           ) -> AsyncIterator[AsyncConnection]:
        if outer is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            async with outer.begin_nested():
                yield outer

    async def _finish(self, ctx: JobContext, outer: AsyncConnection | None = None,
                      reports: _Reports | None = None) -> str:
        job, key = ctx.job, str(ctx.job.job_id)

        async def report(conn: AsyncConnection, into: _Reports | None,
                         event: JobRunFinished) -> None:
            if into is None:
                await self._publish(conn, event, key)
            else:
                into.messages.append(self._message(event, key))

        # This run's outcome and report in a batch, moved to `reports` once its savepoint is
        # released (a run that fails after them leaves neither).
        ours = None if reports is None else _Reports()

        handler = self.handlers.get(job.job_type)
        outcome, message, replayed = "failed", "", False
        began = time.monotonic()
        progress = self.progress.pop(attempt_key(job), None)
        if progress is not None:
            progress.restart()  # the interval runs from the job's start
        try:
            async with self._transaction(outer) as conn:
                # Stamped when the job starts (a transaction of several jobs began earlier).
                claimed = (await conn.execute(pg_insert(job_run).values(
                    job_id=job.job_id, attempt=job.attempt, outcome="running",
                    worker_id=self.worker_id, finished_at=func.clock_timestamp())
                    .on_conflict_do_nothing()
                    .returning(job_run.c.job_id))).first()
                if claimed is None:
                    previous = (await conn.execute(job_run.select().where(
                        job_run.c.job_id == job.job_id))).one()
                    outcome, message, replayed = previous.outcome, previous.message, True
                    earlier = None if reports is None else reports.outcome_of(job.job_id)
                    if earlier is not None:  # run earlier in this batch: its outcome waits
                        outcome, message = earlier
                elif handler is None:
                    raise RuntimeError(f"no handler for {job.job_type}")
                else:
                    ctx.checkpoint()
                    message = await handler(conn, ctx) or "Job completed."
                    if progress is not None:
                        await progress.close(conn)
                    failpoints.hit("worker.before_commit")
                    outcome = "succeeded"
                    recorded = {"run_job_id": job.job_id, "run_outcome": outcome,
                                "run_message": message[:2000]}
                    if ours is None:
                        await conn.execute(_record_outcome, recorded)
                    else:
                        ours.outcomes.append(recorded)
                await report(conn, ours, JobRunFinished(
                    worker=self.ref, job_id=job.job_id, attempt=job.attempt, outcome=outcome,
                    message=message, replayed=replayed))
            if reports is not None and ours is not None:
                reports.outcomes += ours.outcomes
                reports.messages += ours.messages
        except Exception as exc:
            # The effect rolled back with the mark: a retry runs it again from scratch.
            outcome = "cancelled" if isinstance(exc, JobCancelledError) else "failed"
            message = str(exc) if outcome == "cancelled" else f"{type(exc).__name__}: {exc}"
            log.warning("worker.job_failed", job_id=job.job_id, attempt=job.attempt,
                        error=message)
            async with self._transaction(outer) as conn:
                if progress is not None:
                    await progress.close(conn)
                await report(conn, reports, JobRunFinished(
                    worker=self.ref, job_id=job.job_id, attempt=job.attempt, outcome=outcome,
                    message=message[:2000]))
        if not replayed:
            metrics.job_duration_seconds.labels(job.job_type, outcome).observe(
                time.monotonic() - began)
        if outcome == "succeeded":
            self.succeeded += 1
        else:
            self.failed += 1
        self.current = None
        return outcome
