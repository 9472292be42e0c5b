"""tracing: the enqueuer's trace context per job (pgjobs.job_traces)

Revision ID: 0013
Revises: 0012
"""

from pgjobs.db.schema import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0013_tracing.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0013_tracing.down.sql")
