"""Login sessions by the peppered HMAC of their token (misp_platform.auth.sessions), the value
identity publishes for every service's principals projection, instead of its sha256. A sha256
cannot become the HMAC, so the sessions open at the upgrade end: their users log in again.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM login_session")
    op.execute("ALTER TABLE login_session RENAME COLUMN token_hash TO session_hmac")


def downgrade() -> None:
    op.execute("DELETE FROM login_session")
    op.execute("ALTER TABLE login_session RENAME COLUMN session_hmac TO token_hash")
