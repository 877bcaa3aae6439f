"""The topic catalogue: every Kafka topic, declared once, created at start-up by its owner.

The broker runs with automatic topic creation off, so a topic exists only if its owning service
created it from this catalogue, with these settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from misp_contracts.events.abuse import ABUSE_TOPIC
from misp_contracts.events.jobs import WORKER_CONTROL_TOPIC, run_topics

SERVICES: tuple[str, ...] = ("identity", "orgs", "audit", "jobs", "mailer", "settings")

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """One topic and the configuration it is created with."""

    name: str
    owner: str
    partitions: int = 3
    retention_ms: int = -1  # domain events are kept: every projection can be rebuilt from them
    cleanup_policy: str = "delete"  # never "compact" for audit or domain topics
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)
    # Services that decide by what this topic says (a server setting): a write to it answers
    # once each one's consumer group has applied it, so that reads stay free everywhere
    # (misp_platform.propagation; docs/consistency.md).
    readers: tuple[str, ...] = ()
    # Services other than the owner that publish to this topic (commands, workers' reports):
    # with the owner, the only principals the broker lets write it.
    writers: tuple[str, ...] = ()

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


def _per_service(suffix: str, description: str, **kwargs: object) -> list[Topic]:
    return [
        Topic(name=f"misp.{s}.{suffix}.v1", owner=s, description=description.format(service=s),
              **kwargs)  # type: ignore[arg-type]
        for s in SERVICES
    ]


CATALOGUE: tuple[Topic, ...] = (
    Topic("misp.identity.user.v1", "identity", description="User aggregate events"),
    Topic("misp.identity.role.v1", "identity", partitions=1, description="Role aggregate events"),
    Topic("misp.identity.authkey.v1", "identity", description="Authkey aggregate events"),
    Topic("misp.identity.registration.v1", "identity",
          description="Self-registration requests and their outcome"),
    Topic("misp.identity.user-setting.v1", "identity", description="User settings"),
    # Every service projects it (misp_platform.auth.principals) as it projects authkeys; a
    # session lasts hours, so a week covers any rebuild (an older session has expired anyway).
    Topic("misp.identity.session.v1", "identity", retention_ms=7 * DAY_MS,
          description="Browser sessions started and ended (the token's peppered HMAC only)"),
    Topic("misp.orgs.organisation.v1", "orgs", description="Organisation aggregate events"),
    Topic("misp.settings.setting.v1", "settings", partitions=1,
          description="Setting overrides, one event per change",
          readers=("identity", "orgs", "audit", "mailer")),
    Topic("misp.settings.event-blocklist.v1", "settings", partitions=1,
          description="Import blocklist of events (by event uuid)"),
    Topic("misp.settings.org-blocklist.v1", "settings", partitions=1,
          description="Import blocklist of organisations (by org uuid)"),
    Topic("misp.settings.regexp.v1", "settings", partitions=1,
          description="Import regexps: rewrite or block imported values"),
    Topic("misp.settings.allowedlist.v1", "settings", partitions=1,
          description="Signature allowlist: values kept out of NIDS exports"),
    Topic("misp.mailer.commands.v1", "mailer", description="Commands to the mailer",
          writers=("identity",)),
    Topic("misp.mailer.mail.v1", "mailer",
          description="Each mail sent or failed (recipient, subject, Message-ID; never the body)"),
    Topic("misp.mailer.credential.v1", "mailer",
          description="Temporary passwords (argon2id hashes only) and password reset links "
          "(sha256 of the token only) the mailer issued, for identity"),
    Topic("misp.jobs.commands.v1", "jobs", description="Commands to the jobs service",
          writers=("mailer",)),
    Topic("misp.jobs.job.v1", "jobs", description="Job aggregate events (queued, progress, "
          "outcome, retries, cancel)"),
    Topic("misp.jobs.task.v1", "jobs", partitions=1,
          description="Scheduled task events (schedule changes, pauses, ticks)"),
    Topic("misp.jobs.worker.v1", "jobs",
          description="Worker heartbeats and job run reports, from the workers of any service",
          writers=SERVICES),
    Topic(WORKER_CONTROL_TOPIC, "jobs", partitions=1,
          description="Requests to workers: graceful stop, cancel the job in hand"),
    *(Topic(name, "jobs", retention_ms=7 * DAY_MS,
            description=f"Jobs of {owner} in the {queue} queue, for {owner}'s workers")
      for name, (owner, queue) in sorted(run_topics().items())),
    Topic("misp.audit.log.v1", "audit", retention_ms=90 * DAY_MS,
          description="One normalized record per audit log entry, ECS field names, for SIEMs"),
    Topic("misp.audit.checkpoint.v1", "audit", partitions=1,
          description="Signed checkpoints of the audit log's hash chains (tamper evidence); "
                      "kept forever: verification needs every one"),
    Topic(ABUSE_TOPIC, "audit", partitions=1, retention_ms=DAY_MS,
          description="Addresses and key prefixes blocked for a cool-down by the abuse detector; "
                      "every service's API follows it (misp_platform.auth.abuse)"),
    *_per_service("auth", "Authentications seen by {service}", retention_ms=90 * DAY_MS),
    *_per_service("dlq", "Messages {service} could not handle, with the error",
                  partitions=1, retention_ms=30 * DAY_MS),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in CATALOGUE}


def owned_by(service: str) -> list[Topic]:
    """The topics a service creates at start-up."""
    return [t for t in CATALOGUE if t.owner == service]


def topic(name: str) -> Topic:
    """The catalogue entry of a topic; KeyError for a topic nobody declared."""
    return BY_NAME[name]


def written_by(service: str) -> list[Topic]:
    """The topics a service may publish to: its own and those that name it a writer."""
    return [t for t in CATALOGUE if t.owner == service or service in t.writers]


def dlq_topic(service: str) -> str:
    return f"misp.{service}.dlq.v1"
