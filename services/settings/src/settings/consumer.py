"""What the settings consumer handles: nothing beyond the principals projection, which has a
consumer of its own (misp_platform.cli); on start it seeds MISP's import regexps and org
blocklist examples once (first run)."""

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform.config import ServiceSettings
from misp_platform.consumer import Handler
from settings.handlers.first_run import seed


def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    return {}


def topics(_settings: ServiceSettings) -> list[str]:
    return []


async def on_consumer_start(_settings: ServiceSettings, engine: AsyncEngine) -> None:
    await seed(engine)
