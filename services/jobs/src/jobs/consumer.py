"""What the jobs consumer handles: the principals projection (identity's and orgs' events)."""

from collections.abc import Mapping

from jobs.settings import JobsSettings
from misp_platform.auth.principals import PRINCIPAL_HANDLERS, PRINCIPAL_TOPICS
from misp_platform.consumer import Handler


def handlers(_settings: JobsSettings) -> Mapping[str, Handler]:
    return dict(PRINCIPAL_HANDLERS)


def topics(_settings: JobsSettings) -> list[str]:
    return list(PRINCIPAL_TOPICS)
