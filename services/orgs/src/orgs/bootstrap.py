"""The composition root of the orgs service: the one place that wires real adapters."""

from pathlib import Path

from fastapi import FastAPI

from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec
from orgs.api.routes import routers
from orgs.consumer import handlers, on_consumer_start, topics
from orgs.settings import OrgsSettings


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=routers)


spec = ServiceSpec(
    name="orgs",
    settings=OrgsSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    topics=topics,
    on_consumer_start=on_consumer_start,
)
