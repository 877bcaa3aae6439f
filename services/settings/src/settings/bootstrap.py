"""The composition root of the settings service: the one place that wires real adapters."""

from pathlib import Path

from fastapi import FastAPI

from misp_platform.app import create_app as create_platform_app
from misp_platform.config import ServiceSettings
from misp_platform.service import ServiceSpec
from misp_platform.worker_command import worker_command
from settings import cli
from settings.api import acl, describe_types, lists, servers, version
from settings.api.routes import router
from settings.consumer import handlers, on_consumer_start, topics
from settings.handlers.jobs import job_handlers
from settings.settings import SettingsSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_platform_app(settings, routers=[
        router, version.router, servers.router, acl.router, describe_types.router, lists.router])


spec = ServiceSpec(
    name="settings",
    settings=SettingsSettings,
    create_app=create_app,
    migrations_dir=MIGRATIONS_DIR,
    handlers=handlers,
    topics=topics,
    on_consumer_start=on_consumer_start,
    extra_commands=[cli.get_command, cli.set_command,
                    worker_command("settings", job_handlers)],
)
