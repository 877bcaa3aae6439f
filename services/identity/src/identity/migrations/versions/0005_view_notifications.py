"""Notify `identity_views` whenever a read model behind a user's view changes (users, roles,
orgs, user settings, admin settings), in the writer's transaction: the API processes' view
caches (identity/adapters/view_cache.py) empty themselves on it.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("user_account", "role", "org", "user_setting", "admin_setting")


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION notify_identity_views() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('identity_views', '');
            RETURN NULL;
        END $$""")
    for table in TABLES:
        op.execute(f"""
            CREATE TRIGGER {table}_notify_views
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION notify_identity_views()""")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_views ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notify_identity_views()")
