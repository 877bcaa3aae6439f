"""The principals projection's browser sessions (misp_platform.auth.principals): identity's login
sessions by the peppered HMAC of their token, so that orgs accepts the console's cookie.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE principal_session (
        session_hmac VARCHAR(64) NOT NULL,
        user_id BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        version INTEGER,
        deleted BOOLEAN DEFAULT 'false' NOT NULL,
        updated_at TIMESTAMPTZ DEFAULT now() NOT NULL,
        CONSTRAINT principal_session_pkey PRIMARY KEY (session_hmac))""")
    op.execute("CREATE INDEX ix_principal_session_expires_at ON principal_session (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE principal_session")
