"""Live updates: `GET /console/live/<feed>`, a Server-Sent Events stream that says "something
changed" and nothing else.

The console owns no data, and no data travels in the stream: a page that follows a feed
(`data-live`, static/console.js) fetches its table again through the API as its user when it hears
`event: change`, so every rule of who sees what stays the API's. What changed is learnt from Kafka
by one read-only consumer per console process, as the console's own principal (`misp_console`):
no consumer group, no commit; it is assigned every partition of the feeds' topics (feeds.py) at
their end and only notes which topic moved. Without Kafka (no bootstrap servers, or the broker
unreachable) the pages work as before, without live updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from console.feeds import FEED_PROBES, FEEDS, feed_topics, feeds_of
from console.gateway import ApiError
from console.settings import ConsoleSettings
from console.viewer import load_viewer

log = structlog.get_logger("console.live")
router = APIRouter(include_in_schema=False)

HEARTBEAT_S = 15.0
# A stream ends after this long and the browser reconnects (EventSource does, after RETRY_MS):
# the session is checked again, and no stream outlives a logout by more than this.
STREAM_MAX_S = 300.0
RETRY_MS = 2000
RECONNECT_MAX_S = 30.0



def kafka_options(settings: ConsoleSettings) -> dict[str, Any]:
    """The consumer's connection options, from the console's own settings (CONSOLE_KAFKA_*)."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    protocol = settings.kafka_security_protocol.strip().upper() or "PLAINTEXT"
    if protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = protocol
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=settings.kafka_password.get_secret_value())
    if protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ca_file or None)
    return options


class Hub:
    """The streams open in this process, per feed. A stream's queue holds at most one pending
    notice: changes that arrive before the page fetched its table are one change."""

    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Queue[None]]] = {feed: set() for feed in FEEDS}

    def subscribe(self, feed: str) -> asyncio.Queue[None]:
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._streams[feed].add(queue)
        return queue

    def unsubscribe(self, feed: str, queue: asyncio.Queue[None]) -> None:
        self._streams[feed].discard(queue)

    def followers(self, feed: str) -> int:
        return len(self._streams[feed])

    def changed(self, topic: str) -> None:
        for feed in feeds_of(topic):
            for queue in self._streams[feed]:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)


async def events(queue: asyncio.Queue[None], *, heartbeat_s: float = HEARTBEAT_S,
                 max_s: float = STREAM_MAX_S) -> AsyncIterator[str]:
    """The stream's text: the reconnection delay, then `event: change` per notice and a comment
    line every `heartbeat_s` of silence (so proxies and the browser keep the connection), until
    `max_s` has passed."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + max_s
    yield f"retry: {RETRY_MS}\n: live\n\n"
    while (left := ends - loop.time()) > 0:
        try:
            await asyncio.wait_for(queue.get(), timeout=min(heartbeat_s, left))
        except TimeoutError:
            yield ": heartbeat\n\n"
            continue
        yield "event: change\ndata: changed\n\n"


class LiveUpdates:
    """The process's consumer (a background task, reconnecting with a backoff) and its hub."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.connected = False
        self.failed_attempts = 0  # connections to the broker that failed (diagnostics, tests)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.settings.kafka_bootstrap_servers:
            log.info("console.live_off", reason="no CONSOLE_KAFKA_BOOTSTRAP_SERVERS")
            return
        self._task = asyncio.create_task(self._run(), name="console-live")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the pages go on without live updates
                self.failed_attempts += 1
                log.warning("console.live_unavailable", error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=delay)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(**kafka_options(self.settings), group_id=None,
                                    enable_auto_commit=False, request_timeout_ms=10000,
                                    client_id="misp-console-live")
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = [TopicPartition(topic, p) for topic in feed_topics()
                          for p in sorted(cluster.partitions_for_topic(topic) or ())]
            if not partitions:
                raise RuntimeError(f"none of {feed_topics()} is readable")
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            self.connected = True
            log.info("console.live_following", topics=sorted({tp.topic for tp in partitions}))
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                for tp in batch:
                    self.hub.changed(tp.topic)
        finally:
            self.connected = False
            await consumer.stop()


def live_of(request: Request) -> LiveUpdates:
    live: LiveUpdates = request.app.state.live
    return live


async def may_follow(request: Request, feed: str) -> bool:
    """Whether the API lets this user read the feed's page (FEED_PROBES): its rule, asked."""
    try:
        await request.app.state.gateway.call(request, "GET", FEED_PROBES[feed])
    except ApiError as exc:
        if exc.status in (401, 403, 404, 405):
            return False
        raise
    return True


@router.get("/console/live/{feed}")
async def follow(feed: str, request: Request) -> Response:
    """`event: change` whenever the feed's topics move; 401 without a session, 403 for a user who
    may not read the feed's page, 404 for an unknown feed."""
    if feed not in FEEDS:
        return PlainTextResponse("No such feed.", status_code=404)
    viewer = await load_viewer(request, request.app.state.gateway)
    if viewer is None:
        return PlainTextResponse("Log in first.", status_code=401)
    if not await may_follow(request, feed):
        return PlainTextResponse("Not allowed.", status_code=403)
    hub = live_of(request).hub

    async def stream() -> AsyncIterator[str]:
        queue = hub.subscribe(feed)
        try:
            async for text in events(queue):
                yield text
        finally:
            hub.unsubscribe(feed, queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
