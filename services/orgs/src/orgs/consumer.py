"""What the orgs consumer handles: the principals projection (identity's and orgs' events)."""

from collections.abc import Mapping

from misp_platform.auth.principals import PRINCIPAL_HANDLERS, PRINCIPAL_TOPICS
from misp_platform.consumer import Handler
from orgs.settings import OrgsSettings


def handlers(_settings: OrgsSettings) -> Mapping[str, Handler]:
    return dict(PRINCIPAL_HANDLERS)


def topics(_settings: OrgsSettings) -> list[str]:
    return list(PRINCIPAL_TOPICS)
