"""Prometheus metrics of one process: HTTP, outbox relay, consumers, jobs, authentication.

Every metric is registered on `REGISTRY` (one per process, with the process and platform
collectors); `metrics_response()` renders it for the API's `/metrics` endpoint, ops_port.py for
the other roles'. deploy/observability's alerts and dashboard use these names only.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

http_requests_total = Counter(
    "http_requests_total", "HTTP requests answered, by route template and status",
    ["method", "route", "status"], registry=REGISTRY)
http_request_duration_seconds = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))

# The outbox relay: messages Kafka acknowledged.
events_published_total = Counter(
    "events_published_total", "Outbox messages published to Kafka", registry=REGISTRY)
# Outbox rows Kafka refused for good, moved to `parked_message` by the relay; and how many wait
# there now (as an API process last counted them).
outbox_parked_total = Counter(
    "outbox_parked_total", "Outbox messages the relay parked because Kafka refused them for good",
    registry=REGISTRY)
parked_messages = Gauge(
    "parked_messages", "Messages waiting in parked_message for an operator", registry=REGISTRY)
# What waits in the outbox, as the relay holding the lock last measured it after a drain (at
# most once a second while it publishes, every 10 s when idle; a standby relay reports 0): rows,
# and the age of the oldest, which goes on growing between measurements (relay.py).
outbox_backlog = Gauge(
    "outbox_backlog", "Outbox rows not yet published, as the active relay last counted them",
    registry=REGISTRY)
outbox_oldest_age_seconds = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest outbox row not yet published (0: none)",
    registry=REGISTRY)
# Consumers: outcome is applied | skipped | dead_lettered.
messages_consumed_total = Counter(
    "messages_consumed_total", "Kafka messages handled by the consumer, by outcome",
    ["outcome"], registry=REGISTRY)
consumer_lag = Gauge(
    "consumer_lag", "Messages behind the end of each partition, by consumer group",
    ["group", "topic", "partition"], registry=REGISTRY)

kafka_up = Gauge(
    "kafka_up", "1 when Kafka answered this process's probe at the last scrape or diagnostics, "
    "else 0 (readiness does not depend on it: writes wait in the outbox)", registry=REGISTRY)
projection_lag = Gauge(
    "projection_lag", "Messages a consumer group has still to apply, per topic (as an API "
    "process last measured it)", ["group", "topic"], registry=REGISTRY)

# Read-your-writes (consistency.py): how long answers waited for the relay, and readers for
# their projection; outcome is done | timed_out (the guarantee fell back to "eventually").
publish_wait_seconds = Histogram(
    "publish_wait_seconds", "Time a write's answer waited for its events to reach Kafka",
    ["outcome"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
projection_wait_seconds = Histogram(
    "projection_wait_seconds", "Time a read waited for its projection to catch up with Kafka",
    ["group", "outcome"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))

# Job workers (worker.py): how long each job's run took, by type and outcome (succeeded |
# failed | cancelled).
job_duration_seconds = Histogram(
    "job_duration_seconds", "Time a worker spent on a job's run, by job type and outcome",
    ["job_type", "outcome"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0))
# The jobs scheduler (services/jobs): its rounds (outcome ok | failed), the task ticks it ran,
# and per queue the waiting jobs and the workers alive, as a scheduler last counted them.
scheduler_rounds_total = Counter(
    "scheduler_rounds_total", "Scheduler rounds (due ticks, retries, dead workers' jobs), by "
    "outcome", ["outcome"], registry=REGISTRY)
scheduler_ticks_total = Counter(
    "scheduler_ticks_total", "Scheduled task ticks this scheduler claimed and ran",
    registry=REGISTRY)
jobs_waiting = Gauge(
    "jobs_waiting", "Jobs waiting for a worker, by queue", ["queue"], registry=REGISTRY)
jobs_workers_alive = Gauge(
    "jobs_workers_alive", "Workers whose heartbeats are current, by queue", ["queue"],
    registry=REGISTRY)
# The audit's `audit_verify` job: outcome ok | broken (a chain or a checkpoint did not verify).
audit_verifications_total = Counter(
    "audit_verifications_total", "Verifications of the audit log's hash chains, by outcome",
    ["outcome"], registry=REGISTRY)

# Every outcome from 0 in every process: the first failure is then an increase that rate() and
# increase() see (a series born at 1 is not), as deploy/observability's alerts need.
for _counter, _outcomes in ((messages_consumed_total, ("applied", "skipped", "dead_lettered")),
                            (scheduler_rounds_total, ("ok", "failed")),
                            (audit_verifications_total, ("ok", "broken"))):
    for _outcome in _outcomes:
        _counter.labels(_outcome)

auth_failures_total = Counter(
    "auth_failures_total", "Refused authentications, by reason", ["reason"], registry=REGISTRY)

abuse_refusals_total = Counter(
    "abuse_refusals_total", "Requests refused with a 429 before authentication: blocked by the "
    "abuse detector, or past this process's failure budget", ["reason"], registry=REGISTRY)

# Lean paths (app.py): requests answered from in-process caches, or handed to their route (a
# cache miss, a refusal to record): how often the caches serve a hot path.
lean_requests_total = Counter(
    "lean_requests_total", "Requests of a lean path: answered from caches or handed to the route",
    ["route", "outcome"], registry=REGISTRY)

UNMATCHED_ROUTE = "<unmatched>"
# The methods a label may name; any other (a client may send any token) counts as OTHER, so that
# a flood of made-up methods cannot grow the registry. Routes are templates (route_template).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/admin/users/view/{id}`), never the raw path."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if isinstance(template, str):
        return template
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class StatusRecordingSend:
    """An ASGI `send` that passes every message on and keeps the response's status: 500 until a
    response starts, so an app that raises before answering is counted as the 500 it becomes."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class MetricsMiddleware:
    """Pure ASGI: count every HTTP request and time it, labelled by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = StatusRecordingSend(send)
        try:
            await self.app(scope, receive, recorded)
        finally:
            counted, timed = _request_series(method_label(scope.get("method", "")),
                                             route_template(scope), recorded.status)
            counted.inc()
            timed.observe(time.perf_counter() - start)


@functools.lru_cache(maxsize=4096)
def _request_series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The request counter's and histogram's series of these labels, found once (a few route
    templates, methods and statuses: prometheus_client's `labels` takes a lock and builds a
    key on every call)."""
    return (http_requests_total.labels(method, route, str(status)),
            http_request_duration_seconds.labels(method, route))


def metrics_response() -> Response:
    """The Prometheus text exposition of this process's registry."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
