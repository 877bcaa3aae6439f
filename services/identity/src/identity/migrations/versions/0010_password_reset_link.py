"""Password reset links: the one live link of each user, as the mailer issued it
(PasswordResetLinkIssued), kept by the sha256 of its token; a newer link replaces the row.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE IF NOT EXISTS password_reset_link (
        user_id BIGINT NOT NULL,
        credential_id TEXT NOT NULL,
        token_hash TEXT NOT NULL,
        issued_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        used_at TIMESTAMPTZ,
        CONSTRAINT password_reset_link_pkey PRIMARY KEY (user_id))""")
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS ux_password_reset_link_token_hash "
               "ON password_reset_link (token_hash)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS password_reset_link")
