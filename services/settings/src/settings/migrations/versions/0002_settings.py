"""Setting overrides, import blocklists, import regexps, the signature allowlist, first-run marks.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from settings.adapters.tables import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # checkfirst: a re-run after a partial manual fix finds the tables it needs.
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
