"""Drop log_entry's email trigram index: since 0009 every email substring is matched in
log_email (its own trigram index), whose trigger is always on log_entry, then read by the
(email, id) btree. The index served only a log without the trigger, and cost every insert.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_log_entry_email_trgm")


def downgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_log_entry_email_trgm "
               "ON log_entry USING gin (email gin_trgm_ops)")
