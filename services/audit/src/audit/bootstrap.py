"""The composition root of the audit service: the one place that wires real adapters."""

from pathlib import Path

from fastapi import FastAPI

from audit.api.routes import misp_router, router
from audit.consumer import AuditConsumer, handlers, on_consumer_start, replay_handlers
from audit.handlers.commands import COMMANDS
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=[misp_router, router])


spec = ServiceSpec(
    name="audit",
    settings=AuditSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    topic_pattern=TOPIC_PATTERN,
    consumer_class=AuditConsumer,
    replay_handlers=replay_handlers,
    on_consumer_start=on_consumer_start,
    extra_commands=COMMANDS,
)
