"""The worker's `job_run` marks (misp_platform.worker): one row per job whose effect the mailer
applied (`authkey_expiry_warnings`), written in the effect's transaction.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from misp_platform.worker import job_run

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    job_run.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    job_run.drop(op.get_bind(), checkfirst=True)
