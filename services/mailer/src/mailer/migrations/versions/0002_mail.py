"""The mailer's tables: user and setting projections, requests and the mail queue.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from mailer.adapters.tables import metadata

    metadata.create_all(op.get_bind())
    op.create_index("ix_mail_pending", "mail", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_mail_request", "mail", ["request_id"])
    op.create_index("ix_mail_user_org", "mail_user", ["org_id"])


def downgrade() -> None:
    for name in ("mail", "mail_request", "mail_setting", "mail_user"):
        op.drop_table(name)
