"""Read-your-writes across services, for clients that wait for each answer (docs/consistency.md).

- **Writes** answer once Kafka holds their events: the positions a request wrote to the outbox
  are collected (`outbox.written_positions`), and `ReadYourWritesMiddleware` holds a 2xx answer
  until the relay has deleted them (it notifies `outbox_published` as it does), or until
  `publish_timeout_s` (Kafka away: the outbox keeps them; the guarantee falls back to
  "eventually", counted in `publish_wait_seconds{outcome="timed_out"}`).
- **Reads that miss** (an unknown org or key, an org still in use, a log search) ask Kafka for
  the end offsets of the topics they depend on (one request, shared by every miss that arrives
  while it is being prepared), then wait until the consumer group that projects them has applied
  those offsets (`consumer_position`, moved in the transaction of the effects, notified on
  `consumer_progress`), or until `read_timeout_s`, and decide again. The usual path costs nothing.
- **Writes other services decide by** (a server setting) also wait until every service that
  reads their topic has applied them (`applied_everywhere`; misp_platform.propagation), so that
  the reads that follow, on any service, need not ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from misp_contracts.topics import CATALOGUE
from misp_platform import metrics
from misp_platform.db import PROGRESS_CHANNEL, PUBLISHED_CHANNEL, libpq_url
from misp_platform.kafka import client_options
from misp_platform.outbox import announced_positions, written_positions, written_so_far
from misp_platform.propagation import CommittedOffsets, reader_groups, wait_for_readers

log = structlog.get_logger(__name__)

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
# While a listener is down (or between notifications), waiters check this often anyway.
FALLBACK_POLL_S = 0.05
SAFETY_POLL_S = 0.5

_REMAINING = text("SELECT position FROM outbox WHERE position = ANY(:positions)")
_POSITIONS = text("SELECT topic, partition, next_offset FROM consumer_position "
                  "WHERE consumer = :consumer AND topic = ANY(:topics)")


class _Notified:
    """A LISTEN connection: every notification bumps `generation` and wakes the waiters; the
    last payloads are kept, by generation (`payloads_since`)."""

    KEPT = 256

    def __init__(self, database_url: str, channel: str) -> None:
        self.database_url = database_url
        self.channel = channel
        self.generation = 0
        self.listening = False
        # Generation -> how many waiters wait for a notification after it: a test sees a
        # waiter that has taken the last notification in and waits on, instead of pausing.
        self.parked: Counter[int] = Counter()
        self._changed = asyncio.Event()
        self._payloads: deque[str | None] = deque(maxlen=self.KEPT)

    async def run(self, retry_s: float = 1.0) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        libpq_url(self.database_url), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    self.listening = True
                    self._bump(None)  # whatever happened while not listening
                    async for notify in conn.notifies():
                        self._bump(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consistency.listener_down", channel=self.channel, error=str(exc))
            finally:
                self.listening = False
            await asyncio.sleep(retry_s)

    def _bump(self, payload: str | None) -> None:
        self.generation += 1
        self._payloads.append(payload)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def payloads_since(self, since: int) -> list[str | None] | None:
        """The payloads of the notifications after generation `since` (None: some are no
        longer kept; a None among them: what happened while not listening is unknown)."""
        count = self.generation - since
        if count > len(self._payloads):
            return None
        return list(self._payloads)[len(self._payloads) - count:] if count else []

    async def wait(self, since: int, timeout_s: float) -> None:
        """Until a notification after generation `since`, or `timeout_s` (checks again at least
        every SAFETY_POLL_S, and every FALLBACK_POLL_S while not listening)."""
        if self.generation != since:
            return
        timeout_s = min(timeout_s, SAFETY_POLL_S if self.listening else FALLBACK_POLL_S)
        self.parked[since] += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(timeout_s, 0.001))
        finally:
            self.parked[since] -= 1
            if not self.parked[since]:
                del self.parked[since]


class EndOffsets:
    """The end offsets of topics, from Kafka. Concurrent callers share one request: a caller
    joins the next request that starts after it arrived (never one already under way, which
    might predate the write it must see)."""

    def __init__(self, bootstrap_servers: str, *, timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.requests = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._next: asyncio.Future[dict[TopicPartition, int]] | None = None
        self._wanted: set[str] = set()
        self._running = False
        self._connecting = asyncio.Lock()

    async def fetch(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        wanted = set(topics)
        self._wanted |= wanted
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        round_ = self._next
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._rounds())
        ends = await asyncio.shield(round_)
        return {tp: end for tp, end in ends.items() if tp.topic in wanted}

    async def _rounds(self) -> None:
        try:
            while self._next is not None:
                round_, topics = self._next, self._wanted
                self._next, self._wanted = None, set()
                try:
                    round_.set_result(await asyncio.wait_for(self._ask(topics), self.timeout_s))
                except BaseException as exc:
                    await self._reset()
                    if not round_.done():
                        round_.set_exception(exc if isinstance(exc, Exception)
                                             else RuntimeError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._running = False

    async def _ask(self, topics: set[str]) -> dict[TopicPartition, int]:
        async with self._connecting:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(**client_options(self.bootstrap_servers),
                                            group_id=None, enable_auto_commit=False,
                                            request_timeout_ms=int(self.timeout_s * 1000))
                await consumer.start()
                self._consumer = consumer
        if not self._partitions:
            await self._partitions_of("")  # learns every topic's partitions
        partitions = [TopicPartition(t, p) for t in sorted(topics)
                      for p in await self._partitions_of(t)]
        client = self._consumer._client
        if topics - client._topics:
            # One metadata request for every new topic: asked one by one, the client would
            # learn them one per retry (100 ms each).
            await client.set_topics(client._topics | topics)
        self.requests += 1
        if not partitions:
            return {}
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        return ends

    async def warm_up(self) -> None:
        """Connect and learn every topic's partitions and end offsets once, so that the first
        miss of a process is not the one that pays for it (seconds, on a busy broker)."""
        try:
            await self.fetch(sorted(t.name for t in CATALOGUE))
        except Exception as exc:  # Kafka away at start: the first miss tries again
            log.warning("consistency.warm_up_failed", error=str(exc))

    async def _partitions_of(self, topic: str) -> list[int]:
        """The topic's partitions, from the broker's metadata (one request caches every topic's);
        none for a topic that does not exist yet (nothing to wait for: asking Kafka would hang)."""
        if topic not in self._partitions:
            assert self._consumer is not None
            # The consumer's client: `topics()` gives names only, and partitions_for_topic()
            # knows only the topics the consumer was told about.
            cluster = await self._consumer._client.fetch_all_metadata()
            for name in cluster.topics():
                self._partitions[name] = sorted(cluster.partitions_for_topic(name) or ())
        return self._partitions.get(topic, [])

    async def _reset(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def close(self) -> None:
        await self._reset()


class Consistency:
    """One per API process: waits for the relay (writes) and for projections (reads that miss)."""

    def __init__(self, engine: AsyncEngine, bootstrap_servers: str, *,
                 publish_timeout_s: float = PUBLISH_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        url = engine.url.render_as_string(hide_password=False)
        self.publish_timeout_s = publish_timeout_s
        self.read_timeout_s = read_timeout_s
        self.published_channel = _Notified(url, PUBLISHED_CHANNEL)
        self.progress_channel = _Notified(url, PROGRESS_CHANNEL)
        self.end_offsets = EndOffsets(bootstrap_servers, timeout_s=read_timeout_s)
        self.committed = CommittedOffsets(bootstrap_servers, timeout_s=read_timeout_s)
        self.publish_timeouts = 0
        self.read_timeouts = 0
        self.last_timeout_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.published_channel.run()),
                       asyncio.create_task(self.progress_channel.run()),
                       asyncio.create_task(self.end_offsets.warm_up())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.end_offsets.close()
        await self.committed.reset()

    # ---- writes --------------------------------------------------------------------------------

    def publication_mark(self) -> int | None:
        """What to pass `published` as `since`, taken before a request writes: the relay's
        notifications counted so far (None while not listening: then the table is asked)."""
        channel = self.published_channel
        return channel.generation if channel.listening else None

    async def published(self, positions: Sequence[int], *, since: int | None = None) -> bool:
        """Wait until the relay has published these outbox positions (True), or the bound.

        The relay's notifications name the positions they published, so they say when the rows
        are gone. `since` (`published_channel.generation` before the rows were written, while
        listening) lets them say it from the start; otherwise the table is asked first. It is
        asked again only when a notification names nothing (too many positions, a listener that
        was down) or none came for a while."""
        begin = time.monotonic()
        deadline = begin + self.publish_timeout_s
        channel = self.published_channel
        remaining: set[int] | None = set(positions)
        ask = True
        if since is not None and channel.listening:
            named = self._left_after_notifications(set(positions), since)
            if named is not None:
                remaining, since, ask = named, channel.generation, False
        while True:
            if ask:
                since = channel.generation
                remaining = await self._unpublished(positions)
            if not remaining:
                metrics.publish_wait_seconds.labels("done").observe(time.monotonic() - begin)
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                self.publish_timeouts += 1
                self.last_timeout_at = time.time()
                metrics.publish_wait_seconds.labels("timed_out").observe(
                    time.monotonic() - begin)
                log.warning("consistency.publish_wait_timed_out", positions=len(positions))
                return False
            assert since is not None
            await channel.wait(since, left)
            named = (self._left_after_notifications(remaining, since)
                     if channel.generation != since else None)
            if named is None:
                ask = True  # no notification (a safety poll), or one that names nothing
                continue
            remaining, since, ask = named, channel.generation, False

    def _left_after_notifications(self, positions: set[int], since: int) -> set[int] | None:
        """`positions` less those the relay's notifications after generation `since` named;
        None when one of them named nothing or they are no longer all kept."""
        payloads = self.published_channel.payloads_since(since)
        if payloads is None:
            return None
        runs = [announced_positions(p or "") for p in payloads]
        if any(run is None for run in runs):
            return None
        return {p for p in positions if not any(a <= p <= b for run in runs
                                                for a, b in run or ())}

    async def _unpublished(self, positions: Sequence[int]) -> set[int] | None:
        """Which of the positions are still in the outbox (None: the database is away, and the
        answer is not held for it)."""
        try:
            async with self.engine.connect() as conn:
                return set((await conn.execute(
                    _REMAINING, {"positions": list(positions)})).scalars())
        except Exception as exc:
            log.warning("consistency.publish_check_failed", error=str(exc))
            return None

    # ---- reads ---------------------------------------------------------------------------------

    async def caught_up(self, group: str, topics: Iterable[str]) -> bool:
        """Wait until `group` has applied everything Kafka holds now on `topics` (True), or the
        bound (False: decide with what there is)."""
        begin = time.monotonic()
        deadline = begin + self.read_timeout_s
        topics = sorted(set(topics))
        try:
            ends = await self.end_offsets.fetch(topics)
        except Exception as exc:
            log.warning("consistency.end_offsets_failed", group=group, error=str(exc))
            return self._read_timed_out(group, begin)
        targets = {(tp.topic, tp.partition): end for tp, end in ends.items() if end > 0}
        while True:
            if not targets:
                metrics.projection_wait_seconds.labels(group, "done").observe(
                    time.monotonic() - begin)
                return True
            since = self.progress_channel.generation
            async with self.engine.connect() as conn:
                rows = (await conn.execute(_POSITIONS, {"consumer": group,
                                                        "topics": topics})).all()
            applied = {(r.topic, r.partition): r.next_offset for r in rows}
            targets = {k: end for k, end in targets.items() if applied.get(k, 0) < end}
            if not targets:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("consistency.projection_wait_timed_out", group=group,
                            behind={f"{t}:{p}": end - applied.get((t, p), 0)
                                    for (t, p), end in targets.items()})
                return self._read_timed_out(group, begin)
            await self.progress_channel.wait(since, left)

    async def applied_by_readers(self, topic: str) -> bool:
        """Wait until every service that decides by `topic` has applied what Kafka holds on it
        now (True), or the bound (misp_platform.propagation)."""
        begin = time.monotonic()
        try:
            ends = await self.end_offsets.fetch([topic])
        except Exception as exc:
            log.warning("consistency.end_offsets_failed", topic=topic, error=str(exc))
            return self._read_timed_out("readers", begin)
        if await wait_for_readers(self.committed, ends, reader_groups(topic),
                                  timeout_s=self.read_timeout_s):
            return True
        self.read_timeouts += 1
        self.last_timeout_at = time.time()
        return False

    def _read_timed_out(self, group: str, begin: float) -> bool:
        self.read_timeouts += 1
        self.last_timeout_at = time.time()
        metrics.projection_wait_seconds.labels(group, "timed_out").observe(
            time.monotonic() - begin)
        return False

    async def lag(self, group: str, topics: Iterable[str]) -> dict[str, int]:
        """Messages `group` has still to apply, per topic (diagnostics)."""
        topics = sorted(set(topics))
        ends = await self.end_offsets.fetch(topics)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_POSITIONS, {"consumer": group, "topics": topics})).all()
        applied = {(r.topic, r.partition): r.next_offset for r in rows}
        behind: dict[str, int] = {}
        for tp, end in ends.items():
            behind[tp.topic] = behind.get(tp.topic, 0) + max(
                0, end - applied.get((tp.topic, tp.partition), 0))
        return behind


async def decide_fresh(consistency: Consistency | None,
                       projections: Iterable[tuple[str, Iterable[str]]],
                       decide: Callable[[], Awaitable[T]],
                       stale: Callable[[Exception], bool]) -> T:
    """`decide()`; when it fails in a way a lagging projection explains (`stale(exc)`), wait
    until each `(group, topics)` of `projections` has applied what Kafka holds now on its
    topics, and decide once more (the second answer stands)."""
    try:
        return await decide()
    except Exception as exc:
        if consistency is None or not stale(exc):
            raise
    await caught_up_all(consistency, projections)
    return await decide()


async def caught_up_all(consistency: Consistency | None,
                        projections: Iterable[tuple[str, Iterable[str]]]) -> bool:
    """Wait (each bounded) until every `(group, topics)` has applied what Kafka holds now on its
    topics; False when read-your-writes is off or one wait timed out."""
    if consistency is None:
        return False
    done = True
    for group, topics in projections:
        done = await consistency.caught_up(group, topics) and done
    return done


async def published_so_far(app: Any) -> bool:
    """Wait (bounded) until what this request wrote so far is in Kafka, before it waits for an
    effect of it in another service; False when it timed out or read-your-writes is off."""
    consistency = consistency_of(app)
    positions = written_so_far()
    if consistency is None:
        return False
    return not positions or await consistency.published(positions)


async def applied_everywhere(app: Any, topic: str) -> bool:
    """After a write to `topic` that other services decide by (a server setting): wait
    (bounded) until it is in Kafka and every reader of the topic has applied it; False when it
    timed out or read-your-writes is off."""
    consistency = consistency_of(app)
    if consistency is None or not await published_so_far(app):
        return False
    return await consistency.applied_by_readers(topic)


def consistency_of(app: Any) -> Consistency | None:
    found = getattr(app.state, "consistency", None)
    return found if isinstance(found, Consistency) else None


class ReadYourWritesMiddleware:
    """Pure ASGI: a 2xx answer of a request that wrote to the outbox is sent once the relay has
    published what it wrote (bounded; see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        consistency = consistency_of(scope["app"])
        # Before anything is written: the notifications after this say what the relay published.
        since = consistency.publication_mark() if consistency is not None else None
        with written_positions() as written:

            async def send_wrapper(message: Message) -> None:
                if (message["type"] == "http.response.start" and written
                        and 200 <= message["status"] < 300):
                    if consistency is not None:
                        await consistency.published(list(written), since=since)
                    written.clear()
                await send(message)

            await self.app(scope, receive, send_wrapper)
