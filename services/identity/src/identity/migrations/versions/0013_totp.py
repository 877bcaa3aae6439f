"""TOTP two-factor login: the active secret of a user (encrypted, with the last time step a code
was accepted at), the secret being enrolled, and the pending logins that wait for a code (by the
peppered HMAC of their token, never the token).

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE user_totp (
        user_id BIGINT NOT NULL,
        secret TEXT NOT NULL,
        last_step BIGINT NOT NULL,
        created_at TIMESTAMPTZ DEFAULT now() NOT NULL,
        CONSTRAINT user_totp_pkey PRIMARY KEY (user_id))""")
    op.execute("""CREATE TABLE totp_enrolment (
        user_id BIGINT NOT NULL,
        secret TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT totp_enrolment_pkey PRIMARY KEY (user_id))""")
    op.execute("""CREATE TABLE login_challenge (
        token_hmac TEXT NOT NULL,
        user_id BIGINT NOT NULL,
        purpose TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        attempts_left INTEGER NOT NULL,
        ip TEXT,
        user_agent TEXT,
        CONSTRAINT login_challenge_pkey PRIMARY KEY (token_hmac))""")
    op.execute("CREATE INDEX ix_login_challenge_user_id ON login_challenge (user_id)")


def downgrade() -> None:
    op.execute("DROP TABLE login_challenge")
    op.execute("DROP TABLE totp_enrolment")
    op.execute("DROP TABLE user_totp")
