"""The composition root of the jobs service: the one place that wires real adapters."""

from pathlib import Path

from fastapi import FastAPI

from jobs.api.routes import diagnose_schedulers, diagnose_workers, routers
from jobs.cli import COMMANDS
from jobs.consumer import batch_handlers, handlers, on_consumer_start, topics
from jobs.settings import JobsSettings
from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=routers,
                               diagnostics={"workers": diagnose_workers,
                                            "schedulers": diagnose_schedulers})


spec = ServiceSpec(
    name="jobs",
    settings=JobsSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    batch_handlers=batch_handlers,
    topics=topics,
    extra_commands=COMMANDS,
    on_consumer_start=on_consumer_start,
)
