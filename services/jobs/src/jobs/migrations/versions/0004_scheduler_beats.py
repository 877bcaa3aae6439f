"""Each scheduler process's beat (`scheduler`), so that a stopped scheduler shows in
`servers/getWorkers` and the diagnostics instead of going silent.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from jobs.adapters.tables import scheduler

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    scheduler.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    scheduler.drop(op.get_bind(), checkfirst=True)
