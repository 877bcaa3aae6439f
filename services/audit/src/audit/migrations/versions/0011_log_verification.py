"""The last full verification's result (log_verification), one row per kind of run that walks
the whole log (the `audit_verify` job, `python -m audit verify`, the API on a small log or with
`?full=1`), each replaced by its next run: the API, which on a large log verifies only the
entries after a recent signed checkpoint, reports the newest of them and when it ran.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE IF NOT EXISTS log_verification (
        ran_by text PRIMARY KEY,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT now(),
        ok boolean NOT NULL,
        report jsonb NOT NULL
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS log_verification")
