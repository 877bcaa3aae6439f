"""Server settings in the platform's one read model (misp_platform.server_settings): the
mailer's `mail_setting` becomes `setting_value`, as in every service that reads them.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE mail_setting RENAME TO setting_value")
    op.execute("ALTER INDEX IF EXISTS mail_setting_pkey RENAME TO setting_value_pkey")


def downgrade() -> None:
    op.execute("ALTER INDEX IF EXISTS setting_value_pkey RENAME TO mail_setting_pkey")
    op.execute("ALTER TABLE setting_value RENAME TO mail_setting")
