"""The id of this jobs deployment (`jobs_instance`), carried by its dispatches and echoed by the
workers' claims, so that it answers only the claims of its own jobs.

Revision ID: 0003
Revises: 0002
"""

import uuid

from alembic import op
from sqlalchemy import select

from jobs.adapters.tables import jobs_instance

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    jobs_instance.create(bind, checkfirst=True)
    if bind.execute(select(jobs_instance.c.id)).first() is None:
        bind.execute(jobs_instance.insert().values(id=str(uuid.uuid4())))


def downgrade() -> None:
    jobs_instance.drop(op.get_bind(), checkfirst=True)
