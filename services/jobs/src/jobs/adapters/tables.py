"""The jobs service's own tables (beside the platform's event store, outbox and marks).

`job` and `task` are the read models of the job and task streams, written in the same
transaction as each append; `job_attempt` is each job's attempt history; `worker` is the
projection of worker heartbeats; `task_tick` is the scheduler's claim, unique per (task, due
time): two schedulers can never both queue the same tick; `scheduler` is each scheduler
process's own beat (a scheduler that stopped is seen, not silent); `jobs_instance` holds the id
of this jobs deployment, which its dispatches carry and the workers' claims echo.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

job_id_seq = Sequence("job_id_seq", start=1, metadata=metadata)
task_id_seq = Sequence("task_id_seq", start=1, metadata=metadata)

job = Table(
    "job", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("queue", String(32), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("job_input", Text, nullable=False, server_default=""),
    Column("data", JSONB, nullable=False, server_default="{}"),
    Column("status", Integer, nullable=False),
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("max_attempts", Integer, nullable=False, server_default="3"),
    Column("message", Text, nullable=False, server_default=""),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("org_id", BigInteger, nullable=False, server_default="0"),
    Column("process_id", String(64), nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("retry_at", DateTime(timezone=True), nullable=True),
    Column("dead", Boolean, nullable=False, server_default="false"),
    Column("cancelled", Boolean, nullable=False, server_default="false"),
    Column("task_id", BigInteger, nullable=True),
    Column("request_id", String(64), nullable=True, unique=True),
    Column("date_created", DateTime(timezone=True), nullable=False),
    Column("date_modified", DateTime(timezone=True), nullable=False),
    Index("ix_job_queue_status", "queue", "status"),
    Index("ix_job_retry_at", "retry_at", postgresql_where="retry_at IS NOT NULL"),
    Index("ix_job_worker", "worker_id", postgresql_where="worker_id IS NOT NULL"),
    Index("ix_job_task", "task_id", "status"),
)

job_attempt = Table(
    "job_attempt", metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("worker_id", String(64), nullable=True),
    Column("host", String(255), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(32), nullable=True),  # completed | failed | cancelled
    Column("error", Text, nullable=True),
)

# Each scheduler process's beat, written by the process itself (it runs in the jobs service).
scheduler = Table(
    "scheduler", metadata,
    Column("scheduler_id", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("interval_s", Float, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("stopped_at", DateTime(timezone=True), nullable=True),
)

worker = Table(
    "worker", metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("service", String(32), nullable=False),
    Column("queue", String(32), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("user", String(64), nullable=False, server_default=""),
    Column("job_id", BigInteger, nullable=True),
    Column("interval_s", Float, nullable=False, server_default="2"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("stopped_at", DateTime(timezone=True), nullable=True),
    Column("stop_reason", Text, nullable=True),
    Column("succeeded", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
)

task = Table(
    "task", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("type", String(64), nullable=False),
    Column("next_execution_at", DateTime(timezone=True), nullable=True),
    Column("paused", Boolean, nullable=False, server_default="false"),
    Column("message", Text, nullable=False, server_default="Not scheduled yet."),
    Column("last_outcome", String(32), nullable=True),
    Column("last_job_id", BigInteger, nullable=True),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
)

task_tick = Table(
    "task_tick", metadata,
    Column("task_id", BigInteger, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", String(64), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(32), nullable=False),
    UniqueConstraint("task_id", "due_at", name="ux_task_tick"),
)

# One row: this deployment's id. Claims naming another deployment's dispatch (a second stack on
# the same Kafka cluster, a test's own database) are not this service's to answer.
jobs_instance = Table(
    "jobs_instance", metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
