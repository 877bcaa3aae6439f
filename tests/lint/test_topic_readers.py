"""The readers the topic catalogue names for a topic are exactly the services whose consumers
read it: a service that began deciding by server settings without being named would see a
change late, as the settings service would not wait for it (misp_platform.propagation)."""

from __future__ import annotations

import importlib
import re

from misp_contracts.topics import CATALOGUE, SERVICES
from misp_platform.propagation import reader_groups


def reads(service: str, topic: str) -> bool:
    spec = importlib.import_module(f"{service}.bootstrap").spec
    if spec.topic_pattern is not None:
        return re.match(spec.topic_pattern, topic) is not None
    return topic in spec.topics(spec.settings())


def test_every_declared_reader_reads_its_topic_and_no_reader_is_missing() -> None:
    declared = [t for t in CATALOGUE if t.readers]
    assert "misp.settings.setting.v1" in {t.name for t in declared}
    for topic in declared:  # the owner decides by its own database, not by the topic
        consumers = {s for s in SERVICES if s != topic.owner and reads(s, topic.name)}
        assert set(topic.readers) == consumers, topic.name


def test_a_reader_is_waited_for_by_its_main_consumer_group() -> None:
    groups = reader_groups("misp.settings.setting.v1")
    for group in groups:
        service = group.removeprefix("misp.")
        spec = importlib.import_module(f"{service}.bootstrap").spec
        assert spec.settings().main_group == group
