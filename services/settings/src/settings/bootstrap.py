"""The composition root of the settings service: the one place that wires real adapters."""

from pathlib import Path

from fastapi import FastAPI

from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec
from settings.api import version
from settings.api.routes import router
from settings.consumer import handlers, topics
from settings.settings import SettingsSettings


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=[router, version.router])


spec = ServiceSpec(
    name="settings",
    settings=SettingsSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=handlers,
    topics=topics,
)
