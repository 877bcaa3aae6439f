"""The live feeds of the console: which Kafka topics say that a page's data changed.

A feed carries no data: an event on one of its topics only tells the pages that follow it
(`/console/live/<feed>`) to fetch their table again through the API, as their user. The console's
Kafka principal (`misp_console`, deploy/local/kafka_security.py) may read these topics and no
other, write none, and use no consumer group.
"""

from __future__ import annotations

from misp_contracts.events.audit import AUDIT_LOG_TOPIC
from misp_contracts.events.jobs import JOB_TOPIC, TASK_TOPIC

FEEDS: dict[str, tuple[str, ...]] = {
    "jobs": (JOB_TOPIC, TASK_TOPIC),
    "logs": (AUDIT_LOG_TOPIC,),
}


# Who may follow a feed is whom the API lets read the feed's page: the console asks it, as the
# user, with the smallest read of that page (the API's rule, not one of the console's own).
FEED_PROBES: dict[str, str] = {
    "jobs": "/jobs/index/page:1/limit:1",
    "logs": "/admin/logs/index/page:1/limit:1",
}


def feed_topics() -> list[str]:
    """Every topic some feed follows, once each, sorted."""
    return sorted({topic for topics in FEEDS.values() for topic in topics})


def feeds_of(topic: str) -> list[str]:
    """The feeds a record of `topic` changes."""
    return [feed for feed, topics in FEEDS.items() if topic in topics]
