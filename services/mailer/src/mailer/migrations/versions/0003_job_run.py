"""The worker's `job_run` marks (misp_platform.worker): one row per job whose effect the mailer
applied (`authkey_expiry_warnings`), written in the effect's transaction.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from misp_platform.migrations import create_job_run_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_job_run_table(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_run")
