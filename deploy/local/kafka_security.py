#!/usr/bin/env python3
"""The local broker's security plan: a SCRAM user per service (`misp_<service>`) and the ACLs
that let it write only the topics the catalogue gives it (its own, and those naming it a writer),
read only what its consumers subscribe to (the audit: every `misp.*` topic), use only its own
consumer groups, and see the metadata and group positions that read-your-writes and diagnostics
need. Written as lines for deploy/kafka/KafkaSecurity.java, which kafka.sh runs once the broker
is up. Tests and tools connect as `admin`, the broker's only super user.

usage: kafka_security.py --secrets .local/secrets/kafka --out PLAN
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from misp_contracts.events.abuse import ABUSE_TOPIC
from misp_contracts.events.jobs import WORKER_CONTROL_TOPIC, run_topics
from misp_contracts.topics import SERVICES, written_by
from misp_platform.auth.principals import PRINCIPAL_TOPICS

# Who lists every consumer group (read-your-writes of settings; the diagnostics report).
LISTS_GROUPS = ("settings",)
# Who reads every topic (the audit log is built from all of them).
READS_EVERYTHING = ("audit",)
# Who runs the abuse detector (faust): its consumer group and internal topics (changelogs,
# re-keyed strikes) are named after its app id, outside `misp.` (audit/detector.py).
RUNS_DETECTOR = {"audit": "misp-audit-abuse-detector"}
# The web console: a principal of its own, read-only (console_acls).
CONSOLE = "console"


def consumed_by(service: str) -> set[str]:
    """The topics the service's consumers subscribe to: its main consumer (its spec), the
    principals consumer every service runs, and its job workers' run and control topics."""
    spec = importlib.import_module(f"{service}.bootstrap").spec
    topics = set(spec.topics(spec.settings())) | set(PRINCIPAL_TOPICS)
    runs = {name for name, (owner, _queue) in run_topics().items() if owner == service}
    if runs:
        topics |= runs | {WORKER_CONTROL_TOPIC}
    return topics


def acls(service: str) -> list[str]:
    principal = f"User:misp_{service}"
    lines: list[str] = []

    def allow(resource: str, pattern: str, name: str, *operations: str) -> None:
        lines.extend(f"acl {principal} {resource} {pattern} {name} {op}" for op in operations)

    for topic in written_by(service):
        allow("TOPIC", "LITERAL", topic.name, "WRITE", "DESCRIBE")
        if topic.owner == service:  # the owner creates it at start-up and reads its own
            allow("TOPIC", "LITERAL", topic.name, "CREATE", "READ", "DESCRIBE_CONFIGS")
    if service in READS_EVERYTHING:
        allow("TOPIC", "PREFIXED", "misp.", "READ")
    for topic in sorted(consumed_by(service)):
        allow("TOPIC", "LITERAL", topic, "READ")
    # Every API follows the detector's blocks (misp_platform.auth.abuse; no consumer group).
    allow("TOPIC", "LITERAL", ABUSE_TOPIC, "READ")
    if service in RUNS_DETECTOR:
        app_id = RUNS_DETECTOR[service]
        allow("GROUP", "LITERAL", app_id, "READ", "DESCRIBE")
        allow("TOPIC", "PREFIXED", f"{app_id}-", "CREATE", "READ", "WRITE", "DESCRIBE",
              "DESCRIBE_CONFIGS")
    # Metadata, end offsets and group positions only (no data): read-your-writes waits on them.
    allow("TOPIC", "PREFIXED", "misp.", "DESCRIBE")
    allow("GROUP", "PREFIXED", "misp.", "DESCRIBE")
    allow("GROUP", "PREFIXED", f"misp.{service}", "READ")
    allow("CLUSTER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE")
    if service in LISTS_GROUPS:
        allow("CLUSTER", "LITERAL", "kafka-cluster", "DESCRIBE")
    return sorted(set(lines))


def console_acls() -> list[str]:
    """The web console's principal (services/console, live.py): it owns no data, so it may only
    read its live feeds' topics (from their end, with no consumer group) and see their metadata;
    it writes nothing."""
    feeds = importlib.import_module("console.feeds")
    return sorted(f"acl User:misp_{CONSOLE} TOPIC LITERAL {topic} {op}"
                  for topic in feeds.feed_topics() for op in ("READ", "DESCRIBE"))


def plan(passwords: dict[str, str]) -> list[str]:
    """The services' users and ACLs; the console's too when its password is given."""
    lines = [f"user misp_{s} {passwords[s]}" for s in SERVICES]
    for service in SERVICES:
        lines += acls(service)
    if CONSOLE in passwords:
        lines += [f"user misp_{CONSOLE} {passwords[CONSOLE]}", *console_acls()]
    return lines


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--secrets", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    passwords = {s: (a.secrets / f"misp_{s}").read_text(encoding="utf-8").strip()
                 for s in SERVICES}
    console = a.secrets / f"misp_{CONSOLE}"
    if console.is_file():
        passwords[CONSOLE] = console.read_text(encoding="utf-8").strip()
    text = "\n".join(plan(passwords)) + "\n"
    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
