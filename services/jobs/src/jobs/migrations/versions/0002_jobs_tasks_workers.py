"""Jobs, attempts, workers, scheduled tasks and the scheduler's tick claims.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from jobs.adapters.tables import metadata
from misp_platform.worker import job_run

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), checkfirst=True)
    job_run.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    job_run.drop(op.get_bind(), checkfirst=True)
    metadata.drop_all(op.get_bind())
