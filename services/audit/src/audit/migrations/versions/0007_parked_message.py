"""The platform's parked messages: outbox rows Kafka refused for good, moved aside by the relay
with their error so it goes on (misp_platform.relay); an operator lists, retries or drops them.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE parked_message (
        position BIGINT NOT NULL,
        topic VARCHAR(249) NOT NULL,
        message_key TEXT,
        headers JSONB NOT NULL,
        payload BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        error TEXT NOT NULL,
        parked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT parked_message_pkey PRIMARY KEY (position))""")


def downgrade() -> None:
    op.execute("DROP TABLE parked_message")
