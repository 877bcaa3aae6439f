"""What the settings consumer handles: the principals projection (identity's and orgs' events);
on start it seeds MISP's import regexps and org blocklist examples once (first run)."""

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform.auth.principals import PRINCIPAL_HANDLERS, PRINCIPAL_TOPICS
from misp_platform.config import ServiceSettings
from misp_platform.consumer import Handler
from settings.handlers.first_run import seed


def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    return dict(PRINCIPAL_HANDLERS)


def topics(_settings: ServiceSettings) -> list[str]:
    return list(PRINCIPAL_TOPICS)


async def on_consumer_start(_settings: ServiceSettings, engine: AsyncEngine) -> None:
    await seed(engine)
