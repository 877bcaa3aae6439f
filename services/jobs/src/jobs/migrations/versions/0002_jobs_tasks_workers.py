"""Jobs, attempts, workers, scheduled tasks and the scheduler's tick claims.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from misp_platform.migrations import create_job_run_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Spelled out as the step made them; later steps add to them (never edit a released step).
DDL = (
    "CREATE SEQUENCE IF NOT EXISTS job_id_seq START WITH 1",
    "CREATE SEQUENCE IF NOT EXISTS task_id_seq START WITH 1",
    """CREATE TABLE IF NOT EXISTS job (
        id BIGINT NOT NULL,
        stream_id UUID NOT NULL,
        version INTEGER NOT NULL,
        queue VARCHAR(32) NOT NULL,
        job_type VARCHAR(64) NOT NULL,
        job_input TEXT DEFAULT '' NOT NULL,
        data JSONB DEFAULT '{}' NOT NULL,
        status INTEGER NOT NULL,
        retries INTEGER DEFAULT '0' NOT NULL,
        attempt INTEGER DEFAULT '1' NOT NULL,
        max_attempts INTEGER DEFAULT '3' NOT NULL,
        message TEXT DEFAULT '' NOT NULL,
        progress INTEGER DEFAULT '0' NOT NULL,
        org_id BIGINT DEFAULT '0' NOT NULL,
        process_id VARCHAR(64),
        worker_id VARCHAR(64),
        retry_at TIMESTAMP WITH TIME ZONE,
        dead BOOLEAN DEFAULT 'false' NOT NULL,
        cancelled BOOLEAN DEFAULT 'false' NOT NULL,
        task_id BIGINT,
        request_id VARCHAR(64),
        date_created TIMESTAMP WITH TIME ZONE NOT NULL,
        date_modified TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (stream_id),
        UNIQUE (request_id))""",
    "CREATE INDEX IF NOT EXISTS ix_job_queue_status ON job (queue, status)",
    "CREATE INDEX IF NOT EXISTS ix_job_retry_at ON job (retry_at) WHERE retry_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_job_task ON job (task_id, status)",
    "CREATE INDEX IF NOT EXISTS ix_job_worker ON job (worker_id) WHERE worker_id IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS job_attempt (
        job_id BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        worker_id VARCHAR(64),
        host VARCHAR(255),
        pid INTEGER,
        queued_at TIMESTAMP WITH TIME ZONE NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE,
        finished_at TIMESTAMP WITH TIME ZONE,
        outcome VARCHAR(32),
        error TEXT,
        PRIMARY KEY (job_id, attempt))""",
    """CREATE TABLE IF NOT EXISTS task (
        id BIGINT NOT NULL,
        stream_id UUID NOT NULL,
        version INTEGER NOT NULL,
        state JSONB NOT NULL,
        type VARCHAR(64) NOT NULL,
        next_execution_at TIMESTAMP WITH TIME ZONE,
        paused BOOLEAN DEFAULT 'false' NOT NULL,
        message TEXT DEFAULT 'Not scheduled yet.' NOT NULL,
        last_outcome VARCHAR(32),
        last_job_id BIGINT,
        last_run_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (id),
        UNIQUE (stream_id))""",
    """CREATE TABLE IF NOT EXISTS task_tick (
        task_id BIGINT NOT NULL,
        due_at TIMESTAMP WITH TIME ZONE NOT NULL,
        claimed_by VARCHAR(64) NOT NULL,
        claimed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE,
        outcome VARCHAR(32) NOT NULL,
        CONSTRAINT ux_task_tick UNIQUE (task_id, due_at))""",
    """CREATE TABLE IF NOT EXISTS worker (
        worker_id VARCHAR(64) NOT NULL,
        service VARCHAR(32) NOT NULL,
        queue VARCHAR(32) NOT NULL,
        host VARCHAR(255) NOT NULL,
        pid INTEGER NOT NULL,
        "user" VARCHAR(64) DEFAULT '' NOT NULL,
        job_id BIGINT,
        interval_s FLOAT DEFAULT '2' NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE NOT NULL,
        last_seen_at TIMESTAMP WITH TIME ZONE NOT NULL,
        stopped_at TIMESTAMP WITH TIME ZONE,
        stop_reason TEXT,
        succeeded INTEGER DEFAULT '0' NOT NULL,
        failed INTEGER DEFAULT '0' NOT NULL,
        PRIMARY KEY (worker_id))""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)
    create_job_run_table(op.get_bind())


def downgrade() -> None:
    for table in ("job_run", "worker", "task_tick", "task", "job_attempt", "job"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
