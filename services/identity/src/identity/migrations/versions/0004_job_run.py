"""The worker's `job_run` marks (misp_platform.worker): one row per job whose effect identity
applied, written in the effect's transaction.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from misp_platform.migrations import create_job_run_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_job_run_table(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_run")
