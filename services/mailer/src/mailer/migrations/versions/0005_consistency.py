"""Read-your-writes and projections that never go back in time: consumer positions, flagged
streams, and the stream version and tombstone of every principal row
(misp_platform.migrations.CONSISTENCY_DDL).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from misp_platform.migrations import add_consistency_tables, drop_consistency_tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_consistency_tables(op.get_bind())


def downgrade() -> None:
    drop_consistency_tables(op.get_bind())
