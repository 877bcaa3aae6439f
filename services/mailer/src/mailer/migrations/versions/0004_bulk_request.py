"""The bulk sends (`admin/users/email` to all users) waiting for or done by their `bulk_email`
job: `bulk_request`.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from mailer.adapters.tables import bulk_request

    # 0002 creates the tables of the current metadata: on a new database it exists already.
    bulk_request.create(op.get_bind(), checkfirst=True)
    op.create_index("ix_bulk_request_job", "bulk_request", ["job_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("bulk_request")
