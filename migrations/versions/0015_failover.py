"""failover and hot standbys: replay-aware views, worker holdings, guarded finish

Revision ID: 0015
Revises: 0014
"""

from pgjobs.db.schema import run_sql_file

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0015_failover.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0015_failover.down.sql")
