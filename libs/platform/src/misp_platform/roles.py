"""The roles every service runs (`api`, `relay`, `consume`, and `all`: those three and the
service's other programs in one process, for small installs), each until SIGTERM or SIGINT; the
relay and the consumers serve /metrics and /healthz on the ops port when one is set."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.topics import owned_by
from misp_platform import ops_port
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.config import ServiceSettings
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import engine_for
from misp_platform.kafka import adopt_committed_offsets, create_producer, ensure_topics
from misp_platform.relay import OutboxRelay
from misp_platform.service import ServiceSpec

log = structlog.get_logger(__name__)

# A part of a process: runs until the event is set (then stops cleanly), or fails.
Part = Callable[[asyncio.Event], Awaitable[None]]


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.asynccontextmanager
async def open_relay(settings: ServiceSettings) -> AsyncIterator[OutboxRelay]:
    """The outbox relay with its engine and a started producer, closed on the way out."""
    engine = engine_for(settings)
    producer = create_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        yield OutboxRelay(engine, settings.database_url, producer)
    finally:
        await producer.stop()
        await engine.dispose()


async def run_relay(spec: ServiceSpec, settings: ServiceSettings) -> None:
    async with ops_port.serving(settings) as ops:
        await ensure_topics(settings.kafka_bootstrap_servers, owned_by(spec.name))
        async with open_relay(settings) as relay, ops.alive():
            # a standby relay, waiting for the lock, is alive too
            await relay.run(stop_on_signals())


def build_consumer(spec: ServiceSpec, settings: ServiceSettings,
                   engine: AsyncEngine) -> ConsumerRunner:
    return spec.consumer_class(
        service=spec.name, group=settings.consumer_group or spec.consumer_group, engine=engine,
        bootstrap_servers=settings.kafka_bootstrap_servers, handlers=spec.handlers(settings),
        batch_handlers=spec.batch_handlers(settings),
        topics=spec.topics(settings), pattern=spec.topic_pattern,
        max_attempts=settings.consumer_max_attempts, backoff_s=settings.consumer_retry_backoff_s,
    )


def build_principals_consumer(spec: ServiceSpec, settings: ServiceSettings,
                              engine: AsyncEngine) -> ConsumerRunner:
    """The principals projection's own consumer: identity's and orgs' feeds, nothing else."""
    return ConsumerRunner(
        service=spec.name, group=settings.principals_group, engine=engine,
        bootstrap_servers=settings.kafka_bootstrap_servers, handlers={},
        batch_handlers=spec.principal_handlers(settings), topics=list(PRINCIPAL_TOPICS),
        max_attempts=settings.consumer_max_attempts, backoff_s=settings.consumer_retry_backoff_s,
        failpoint_scope="principals",
    )


@contextlib.asynccontextmanager
async def open_consumers(spec: ServiceSpec,
                         settings: ServiceSettings) -> AsyncIterator[list[ConsumerRunner]]:
    """The service's consumers, started (`spec.on_consumer_start` run) but not yet running: the
    principals projection's and, when the service subscribes to anything else, its own."""
    engine = engine_for(settings)
    try:
        if spec.on_consumer_start is not None:
            await spec.on_consumer_start(settings, engine)
        # Until this release the main group applied the principals: the new group starts
        # where it stood.
        await adopt_committed_offsets(settings.kafka_bootstrap_servers,
                                      source_group=settings.main_group,
                                      target_group=settings.principals_group,
                                      topics=PRINCIPAL_TOPICS)
        runners = [build_principals_consumer(spec, settings, engine)]
        if spec.topics(settings) or spec.topic_pattern:
            runners.append(build_consumer(spec, settings, engine))
        yield runners
    finally:
        await engine.dispose()


async def run_consumer(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """The service's consumers in one process; either one failing stops both (and the
    process)."""
    async with ops_port.serving(settings) as ops:
        await ensure_topics(settings.kafka_bootstrap_servers, owned_by(spec.name))
        stop = stop_on_signals()
        async with open_consumers(spec, settings) as runners, ops.alive(), \
                asyncio.TaskGroup() as group:
            for runner in runners:
                group.create_task(runner.run(stop))


# An idle keep-alive connection outlives the gateway's (deploy/gateway/render.py GATEWAY_IDLE_S):
# nginx closes it first, never sending a request on one the API is closing (a reset, a 503).
UPSTREAM_IDLE_S = 75
# A part of `all` other than the API that failed or ended on its own starts again after this,
# doubling up to the most (back to the first once a run lasted PART_HEALTHY_S).
PART_RESTART_S = 1.0
PART_RESTART_MAX_S = 30.0
PART_HEALTHY_S = 60.0


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    # No proxy handling in uvicorn: the app finds the client behind the trusted proxies itself
    # (misp_platform.client_address), from the real peer, as the in-process tests run it.
    return {"host": settings.http_host, "port": settings.http_port, "log_config": None,
            "access_log": False, "proxy_headers": False,
            "timeout_keep_alive": UPSTREAM_IDLE_S}


def run_api(spec: ServiceSpec, settings: ServiceSettings) -> None:
    import uvicorn

    uvicorn.run(spec.create_app(settings), **uvicorn_options(settings))


def api_part(spec: ServiceSpec, settings: ServiceSettings) -> Part:
    """The HTTP API served in the running loop, stopped by the event instead of by signals (the
    process's handler sets the event for every part); it drains its connections as it stops."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the process's own handler (stop_on_signals) stops every part

    async def serve(stop: asyncio.Event) -> None:
        server = Server(uvicorn.Config(spec.create_app(settings),
                                       **uvicorn_options(settings)))

        async def stop_when_asked() -> None:
            await stop.wait()
            server.should_exit = True

        asked = asyncio.create_task(stop_when_asked())
        try:
            await server.serve()
        finally:
            asked.cancel()

    return serve


class PartFailedError(Exception):
    """A part of the `all` role failed, or ended before the process was asked to stop."""


async def run_all(spec: ServiceSpec, settings: ServiceSettings,
                  others: Mapping[str, Part] | None = None) -> None:
    """The API, the outbox relay, the consumers and `others` (the programs given by `--with`,
    by name) in this process and its one event loop, until SIGTERM or SIGINT.

    The API failing or ending on its own stops the others cleanly (the relay releases its lock,
    the consumers leave their groups) and the process with PartFailedError: the supervisor
    starts it again. Any other part that fails or ends on its own (a database outage, a worker
    asked to stop: MISP's stopWorker, "kill all workers") is started again in the process, as
    the supervisor restarts each role's process in the full profile, and the service's API
    keeps answering. No ops port: the API serves /metrics (the process's one registry, every
    part's metrics) and /health."""
    stop = stop_on_signals()
    await ensure_topics(settings.kafka_bootstrap_servers, owned_by(spec.name))
    async with open_relay(settings) as relay, open_consumers(spec, settings) as consumers:
        parts: dict[str, Part] = {"api": api_part(spec, settings), "relay": relay.run}
        parts.update({f"consumer {runner.group}": runner.run for runner in consumers})
        parts.update(others or {})
        failed = [name for name, ok in zip(parts, await asyncio.gather(
            *(_guarded(name, part, stop, restart=name != "api")
              for name, part in parts.items())), strict=True)
            if not ok]
    if failed:
        raise PartFailedError(f"stopped because {', '.join(failed)} failed or ended")


async def _guarded(name: str, part: Part, stop: asyncio.Event, *,
                   restart: bool = False) -> bool:
    """Run one part; whether it ended well (by the event). The API failing or ending before the
    event sets it: every other part stops too. A `restart` part (the relay, the consumers, the
    `--with` programs) that fails or ends before the event is run again instead, after a delay
    that doubles from PART_RESTART_S up to PART_RESTART_MAX_S (back to the first after a run of
    PART_HEALTHY_S), as the supervisor restarts each role's process in the full profile: a
    PostgreSQL or Kafka outage, or a worker asked to stop, leaves the service's API answering."""
    delay = PART_RESTART_S
    while True:
        started = time.monotonic()
        try:
            await part(stop)
            error = None
        except (Exception, SystemExit) as exc:  # uvicorn exits on a failed start-up
            error = exc
        if stop.is_set() and error is None:
            log.info("all.part_stopped", part=name)
            return True
        if error is not None:
            log.error("all.part_failed", part=name, error=f"{type(error).__name__}: {error}",
                      exc_info=isinstance(error, Exception))
        if not restart:
            if error is None:
                log.error("all.part_ended", part=name)
            stop.set()
            return False
        if stop.is_set():
            return True  # it failed while the process was stopping: nothing to restart
        if time.monotonic() - started >= PART_HEALTHY_S:
            delay = PART_RESTART_S
        log.info("all.part_restarting", part=name, in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return True
        delay = min(delay * 2, PART_RESTART_MAX_S)
