"""flow limits: fleet-wide concurrency and rate limits

Revision ID: 0018
Revises: 0017
"""

from pgjobs.db.schema import run_sql_file

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0018_flow_limits.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0018_flow_limits.down.sql")
