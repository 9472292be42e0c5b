"""job events: a job's deferred event is a column, procrastinate_events a view

Revision ID: 0022
Revises: 0021
"""

from pgjobs.db.schema import run_sql_file

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0022_job_events.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0022_job_events.down.sql")
