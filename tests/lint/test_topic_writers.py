"""The broker lets a service write only the topics the catalogue gives it (misp_contracts.topics
`written_by`: its own, and those naming it among their `writers`), so the catalogue must name
every service that publishes to another's topic: an event a service's code builds for a foreign
topic, or a job worker's report, without its name there would be refused by Kafka (and parked)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import misp_contracts.events as events_package
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import run_topics
from misp_contracts.topics import BY_NAME, SERVICES, written_by
from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
WORKER_REPORTS = "misp.jobs.worker.v1"


def event_classes() -> dict[str, str]:
    """Every event class with a fixed topic: name -> topic."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(events_package.__path__):
        module = importlib.import_module(f"misp_contracts.events.{info.name}")
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, DomainEvent)
                    and isinstance(getattr(value, "topic", None), str) and value.topic):
                found[name] = value.topic
    return found


def built_by(service: str) -> set[str]:
    """The foreign topics of the events the service's code constructs."""
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in (ROOT / "services" / service / "src").rglob("*.py"))
    return {topic for name, topic in event_classes().items()
            if BY_NAME[topic].owner != service and re.search(rf"\b{name}\(", source)}


def test_every_foreign_topic_a_service_publishes_to_names_it_a_writer() -> None:
    for service in SERVICES:
        allowed = {t.name for t in written_by(service)}
        assert built_by(service) <= allowed, service


def test_every_service_that_runs_job_workers_may_report_to_the_jobs_service() -> None:
    # Job types tests register at run time (owner "jobstest") are not services.
    owners = {owner for owner, _queue in run_topics().values() if owner in SERVICES}
    assert owners, "no job type has a run topic"
    for service in owners:
        assert WORKER_REPORTS in {t.name for t in written_by(service)}, service


def load_plan() -> ModuleType:
    return load_script(ROOT / "deploy" / "local" / "kafka_security.py", "kafka_security")


def test_the_brokers_acls_follow_the_catalogue_and_the_consumers() -> None:
    plan = load_plan()
    lines = plan.plan({s: f"pw-{s}" for s in SERVICES})
    writes = {(line.split()[1], line.split()[4]) for line in lines
              if line.startswith("acl") and line.endswith(" WRITE")}
    reads = {(line.split()[1], line.split()[3], line.split()[4]) for line in lines
             if line.startswith("acl") and " TOPIC " in line and line.endswith(" READ")}
    assert ("User:misp_orgs", "misp.identity.user.v1") not in writes
    assert ("User:misp_identity", "misp.mailer.commands.v1") in writes
    assert all(principal != "User:admin" for principal, _ in writes)
    for service in SERVICES:
        spec = importlib.import_module(f"{service}.bootstrap").spec
        if spec.topic_pattern is not None:  # a pattern consumer reads every topic
            assert service in plan.READS_EVERYTHING
            assert (f"User:misp_{service}", "PREFIXED", "misp.") in reads
        for topic in spec.topics(spec.settings()):
            assert (f"User:misp_{service}", "LITERAL", topic) in reads, (service, topic)
    assert ("User:misp_identity", "LITERAL", "misp.mailer.mail.v1") not in reads
    assert sum(line.startswith("user ") for line in lines) == len(SERVICES)
