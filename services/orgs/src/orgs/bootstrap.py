"""The composition root of the orgs service: the one place that wires real adapters."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec
from orgs.adapters.store import SqlUnitOfWork
from orgs.api.routes import routers
from orgs.consumer import handlers, on_consumer_start, topics
from orgs.settings import OrgsSettings


@asynccontextmanager
async def sql_unit_of_work(app: FastAPI) -> AsyncIterator[None]:
    """The routes' commands run in SQL units of work on the app's engine (api/deps.py), one per
    request."""
    engine = app.state.engine
    app.state.unit_of_work = lambda: SqlUnitOfWork(engine)
    yield


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=routers, lifespan_hooks=[sql_unit_of_work])


spec = ServiceSpec(
    name="orgs",
    settings=OrgsSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    topics=topics,
    on_consumer_start=on_consumer_start,
)
