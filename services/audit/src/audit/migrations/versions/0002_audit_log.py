"""The audit log (MISP's Log rows with their hash chain), chain heads, signed checkpoints, and
the settings that change what is logged. Idempotent: safe on every start.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from audit.adapters.tables import DDL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the audit log is never dropped by a migration")
