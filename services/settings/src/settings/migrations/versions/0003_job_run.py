"""The worker's `job_run` marks (misp_platform.worker) and the reports of the
`settings_diagnostics` job.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from misp_platform.migrations import create_job_run_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = (
    """CREATE TABLE IF NOT EXISTS diagnostics_report (
        job_id BIGINT NOT NULL,
        ok BOOLEAN NOT NULL,
        summary TEXT NOT NULL,
        report JSONB NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (job_id))""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)
    create_job_run_table(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS diagnostics_report")
    op.execute("DROP TABLE IF EXISTS job_run")
