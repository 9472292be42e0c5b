"""table upkeep: queue-friendly autovacuum thresholds, dead-rows health check

Revision ID: 0008
Revises: 0007
"""

from pgjobs.db.schema import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0008_table_upkeep.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0008_table_upkeep.down.sql")
