"""structlog set-up for every process: ECS JSON in production, console in development, secrets
redacted, request and correlation ids bound from context variables.

Standard-library loggers (uvicorn, aiokafka, SQLAlchemy) go through the same processors.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import ecs_logging
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "*****"

SECRET_KEYS = frozenset({
    "password", "authkey", "key", "passphrase", "secret", "token", "pepper",
    "authkey_raw", "api_key", "authorization", "x-misp-auth",
})
_SECRET_SUFFIXES = ("_password", "_passphrase", "_secret", "_token", "_pepper", "_authkey")
_MAX_DEPTH = 6


def is_secret_key(name: object) -> bool:
    if not isinstance(name, str):
        return False
    lowered = name.lower()
    return lowered in SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)


def _redact(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_key(k) and v is not None else _redact(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the value of any key that names a secret (at any depth) by `*****`."""
    for name, value in list(event_dict.items()):
        if name == "event":
            continue
        if is_secret_key(name):
            if value is not None:
                event_dict[name] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[name] = _redact(value, 1)
    return event_dict


# Our context keys and their ECS names.
_ECS_RENAMES = {
    "request_id": "http.request.id",
    "correlation_id": "trace.id",
    "service": "service.name",
    "logger": "log.logger",
}


def add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The active span's trace and span ids (OpenTelemetry), when one is active."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _to_ecs_names(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if "trace_id" in event_dict:
        # A span is active: trace.id is its trace, and the correlation id a label beside it.
        if "correlation_id" in event_dict:
            event_dict["labels.correlation_id"] = event_dict.pop("correlation_id")
        event_dict["trace.id"] = event_dict.pop("trace_id")
        event_dict["span.id"] = event_dict.pop("span_id", None)
    for ours, ecs in _ECS_RENAMES.items():
        if ours in event_dict:
            event_dict[ecs] = event_dict.pop(ours)
    # ECS reserves these as objects; keep a plain value under a name that cannot clash.
    for reserved in ("error", "log", "http", "service", "trace", "span", "labels"):
        if reserved in event_dict and not isinstance(event_dict[reserved], Mapping):
            event_dict[f"{reserved}.value"] = event_dict.pop(reserved)
    return event_dict


class _EcsRenderer:
    """ecs_logging's structlog formatter, with a plain JSON fallback so a log line is never lost."""

    def __init__(self) -> None:
        self._ecs = ecs_logging.StructlogFormatter(ensure_ascii=False)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        try:
            return self._ecs(logger, method, dict(event_dict))
        except Exception:  # a field shape ECS rejects: still write the line
            event_dict.setdefault("log.level", method)
            return json.dumps(event_dict, default=str, ensure_ascii=False)


def _add_service(service: str) -> Processor:
    def add(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict
    return add


class _Stderr:
    """Writes to whatever `sys.stderr` is now (test runners swap it), never a stale stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    return value if isinstance(value, int) else logging.INFO


def configure_logging(service: str, log_format: str = "console", level: str | int = "info") -> None:
    """Configure structlog and the standard library for this process (safe to call again)."""
    numeric = _level(level)
    json_output = log_format.lower() == "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        _add_service(service),
        redact_secrets,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Processor
    if json_output:
        shared.append(_to_ecs_names)
        renderer = _EcsRenderer()
    else:
        shared[1:1] = [structlog.processors.add_log_level,
                       structlog.processors.TimeStamper(fmt="iso", utc=True)]
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )

    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_misp_platform", False):
            root.removeHandler(old)
    handler._misp_platform = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("aiokafka", "kafka", "sqlalchemy.engine", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


# Paths whose rest is a secret (a password reset link's token): logged without it.
SECRET_PATH_PREFIXES = ("/users/password_reset/",)


def loggable_path(path: str) -> str:
    """`path` as a log line may show it: the secret part of SECRET_PATH_PREFIXES' paths masked."""
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "*****"
    return path


def bind_request(request_id: str, correlation_id: str | None = None) -> None:
    """Bind the ids to every log line of the current task (the request-context middleware)."""
    structlog.contextvars.bind_contextvars(request_id=request_id,
                                           correlation_id=correlation_id or request_id)


@contextmanager
def request_context(request_id: str, correlation_id: str | None = None) -> Iterator[None]:
    """Bind the ids for the duration of a block, then restore what was bound before; keys bound
    inside the block (the principal's `user_id`...) are dropped too, so none outlives its
    request even when requests share a task (in-process test clients)."""
    before = set(structlog.contextvars.get_contextvars())
    try:
        with structlog.contextvars.bound_contextvars(
                request_id=request_id, correlation_id=correlation_id or request_id):
            yield
    finally:
        added = set(structlog.contextvars.get_contextvars()) - before
        if added:
            structlog.contextvars.unbind_contextvars(*added)


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def current_correlation_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else None


def redact_mapping(values: MutableMapping[str, Any]) -> dict[str, Any]:
    """The same redaction for any dict (request bodies in debug logs, error reports)."""
    redacted = _redact(values, 0)
    return dict(redacted) if isinstance(redacted, Mapping) else {}
