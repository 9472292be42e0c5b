"""job runs: a job's 'started' and 'succeeded' events kept in its row

Revision ID: 0024
Revises: 0023
"""

from pgjobs.db.schema import run_sql_file

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0024_job_runs.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0024_job_runs.down.sql")
