"""The platform's tables (event store, outbox, processed marks, principals) for identity.

Revision ID: 0001
Revises:
"""

from alembic import op

from misp_platform.migrations import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the first migration is not reversible")
