"""The worker's `job_run` marks (misp_platform.worker) and the reports of the
`settings_diagnostics` job.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from misp_platform.worker import job_run
from settings.adapters.tables import diagnostics_report

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    job_run.create(op.get_bind(), checkfirst=True)
    diagnostics_report.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    diagnostics_report.drop(op.get_bind(), checkfirst=True)
    job_run.drop(op.get_bind(), checkfirst=True)
