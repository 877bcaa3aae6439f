"""The roles every service runs (`api`, `relay`, `consume`), each until SIGTERM or SIGINT; the
relay and the consumers serve /metrics and /healthz on the ops port when one is set."""

from __future__ import annotations

import asyncio
import signal

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


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_relay(spec: ServiceSpec, settings: ServiceSettings) -> None:
    async with ops_port.serving(settings) as ops:
        await ensure_topics(settings.kafka_bootstrap_servers, owned_by(spec.name))
        engine = engine_for(settings)
        producer = create_producer(settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            async with ops.alive():  # a standby relay, waiting for the lock, is alive too
                await OutboxRelay(engine, settings.database_url, producer).run(stop_on_signals())
        finally:
            await producer.stop()
            await engine.dispose()


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


async def run_consumer(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """The service's consumers in one process: the principals projection's and, when the service
    subscribes to anything else, its own; either one failing stops both (and the process)."""
    async with ops_port.serving(settings) as ops:
        await ensure_topics(settings.kafka_bootstrap_servers, owned_by(spec.name))
        engine = engine_for(settings)
        stop = stop_on_signals()
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
            async with ops.alive(), asyncio.TaskGroup() as group:
                for runner in runners:
                    group.create_task(runner.run(stop))
        finally:
            await engine.dispose()


# An idle keep-alive connection outlives the gateway's (deploy/gateway/render.py GATEWAY_IDLE_S):
# nginx closes it first, never sending a request on one the API is closing (a reset, a 503).
UPSTREAM_IDLE_S = 75


def run_api(spec: ServiceSpec, settings: ServiceSettings) -> None:
    import uvicorn

    # No proxy handling in uvicorn: the app finds the client behind the trusted proxies itself
    # (misp_platform.client_address), from the real peer, as the in-process tests run it.
    uvicorn.run(spec.create_app(settings), host=settings.http_host, port=settings.http_port,
                log_config=None, access_log=False, proxy_headers=False,
                timeout_keep_alive=UPSTREAM_IDLE_S)
