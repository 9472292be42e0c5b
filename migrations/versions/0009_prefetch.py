"""prefetch: partial-start claims, rescue of unstarted jobs, batched outcomes

Revision ID: 0009
Revises: 0008
"""

from pgjobs.db.schema import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0009_prefetch.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0009_prefetch.down.sql")
