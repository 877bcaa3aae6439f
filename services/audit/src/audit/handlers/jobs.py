"""The audit's background jobs (`python -m audit worker <queue>`): `audit_verify` and
`audit_prune`, the work of `python -m audit verify|prune` in the worker's transaction (a full
verification's result kept for the API's `last_full`, in that transaction too)."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.adapters.keys import load_key, verification_key
from audit.domain.checkpoint import public_raw
from audit.handlers.integrity import (
    PruneReport,
    VerifyReport,
    prune_in,
    published_checkpoints,
    record_verification,
    utcnow,
    verify_in,
)
from audit.settings import AuditSettings
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC
from misp_platform import metrics
from misp_platform.config import ServiceSettings
from misp_platform.worker import JobContext, JobHandler

log = structlog.get_logger(__name__)

DB_ONLY = "db-only"


def verify_summary(report: VerifyReport) -> str:
    """The job message: the figures, then the first broken link or the checkpoint problem."""
    figures = (f"{report.entries} entries in {report.chains} chains, "
               f"{report.checkpoints} checkpoints (epoch {report.epoch})")
    if report.ok:
        return f"Audit log verified: {figures}."
    problems = []
    if report.checkpoint_problem:
        problems.append(f"checkpoint problem: {report.checkpoint_problem}")
    if report.first_broken:
        b = report.first_broken
        problems.append(f"first broken link: chain {b.chain} seq {b.seq} id {b.entry_id} "
                        f"({b.reason}); {len(report.broken_chains)} broken chain(s)")
    return f"Audit log BROKEN: {'; '.join(problems)}. Checked {figures}."


def prune_summary(report: PruneReport, retention_days: int) -> str:
    if retention_days <= 0:
        return "Nothing pruned: retention is off (AUDIT_RETENTION_DAYS is 0)."
    if not report.upto:
        return f"Nothing pruned: no checkpoint is older than {retention_days} days."
    number = report.checkpoint.number if report.checkpoint else None
    return (f"Pruned {report.pruned_entries} entries from {len(report.upto)} chains "
            f"(retention {retention_days} days); pruned checkpoint {number}.")


def job_handlers(settings: ServiceSettings, *,
                 checkpoint_topic: str = AUDIT_CHECKPOINT_TOPIC) -> Mapping[str, JobHandler]:
    assert isinstance(settings, AuditSettings)
    s = settings

    async def audit_verify(conn: AsyncConnection, ctx: JobContext) -> str:
        """Job input `db-only` skips the comparison with the checkpoints on Kafka."""
        public = public_raw(verification_key(s.key_path, s.verify_key))
        db_only = ctx.job.job_input == DB_ONLY or bool(ctx.job.data.get("db_only"))
        published = [] if db_only else await published_checkpoints(
            s.kafka_bootstrap_servers, checkpoint_topic)
        await ctx.progress(10, "checkpoints read, walking the chains")
        started = utcnow()
        report = await verify_in(conn, public, published=published)
        await record_verification(conn, report, started_at=started, ran_by="job",
                                  compared_with_kafka=not db_only)
        metrics.audit_verifications_total.labels("ok" if report.ok else "broken").inc()
        if not report.ok:
            log.warning("audit.verify_job_broken", job_id=ctx.job.job_id, **report.as_dict())
        return verify_summary(report)

    async def audit_prune(conn: AsyncConnection, ctx: JobContext) -> str:
        days = s.retention_days
        report = await prune_in(conn, load_key(s.key_path), retention_days=days,
                                topic=checkpoint_topic)
        return prune_summary(report, days)

    return {"audit_verify": audit_verify, "audit_prune": audit_prune}
