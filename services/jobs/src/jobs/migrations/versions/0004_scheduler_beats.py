"""Each scheduler process's beat (`scheduler`), so that a stopped scheduler shows in
`servers/getWorkers` and the diagnostics instead of going silent.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = (
    """CREATE TABLE IF NOT EXISTS scheduler (
        scheduler_id VARCHAR(128) NOT NULL,
        host VARCHAR(255) NOT NULL,
        pid INTEGER NOT NULL,
        interval_s FLOAT NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE NOT NULL,
        last_seen_at TIMESTAMP WITH TIME ZONE NOT NULL,
        stopped_at TIMESTAMP WITH TIME ZONE,
        PRIMARY KEY (scheduler_id))""",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS scheduler")
