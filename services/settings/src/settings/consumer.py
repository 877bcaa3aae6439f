"""What the settings consumer handles: the principals projection (identity's and orgs' events)."""

from collections.abc import Mapping

from misp_platform.auth.principals import PRINCIPAL_HANDLERS, PRINCIPAL_TOPICS
from misp_platform.consumer import Handler
from settings.settings import SettingsSettings


def handlers(_settings: SettingsSettings) -> Mapping[str, Handler]:
    return dict(PRINCIPAL_HANDLERS)


def topics(_settings: SettingsSettings) -> list[str]:
    return list(PRINCIPAL_TOPICS)
