"""The log's emails listed once each (log_email, filled by a trigger on log_entry) and a btree on
log_entry (email, id): an email substring search matches the few distinct emails, then reads
their rows by the btree. The trigram index alone read every row's `adm`, `org`... postings.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# One statement per insert into the log (COPY included), whatever its row count. Emails in a
# fixed order so that two consumers adding the same new emails wait for each other, never
# deadlock. Rows pruned later leave their email listed: a search for it finds no row.
DDL = (
    "CREATE TABLE IF NOT EXISTS log_email (email text PRIMARY KEY)",
    "CREATE INDEX IF NOT EXISTS ix_log_email_trgm ON log_email USING gin (email gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_log_entry_email ON log_entry (email, id)",
    """CREATE OR REPLACE FUNCTION log_email_fill() RETURNS trigger AS $$
    BEGIN
        INSERT INTO log_email (email)
        SELECT DISTINCT email FROM log_entry_added ORDER BY email
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS log_email_fill ON log_entry",
    """CREATE TRIGGER log_email_fill AFTER INSERT ON log_entry
    REFERENCING NEW TABLE AS log_entry_added
    FOR EACH STATEMENT EXECUTE FUNCTION log_email_fill()""",
    # The trigger's lock holds writers off until the migration commits: no row escapes both.
    """INSERT INTO log_email (email)
    SELECT DISTINCT email FROM log_entry ORDER BY email ON CONFLICT DO NOTHING""",
    "ANALYZE log_email",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS log_email_fill ON log_entry")
    op.execute("DROP FUNCTION IF EXISTS log_email_fill()")
    op.execute("DROP INDEX IF EXISTS ix_log_entry_email")
    op.execute("DROP TABLE IF EXISTS log_email")
