"""fail_job_attempt fails a todo job for good, as procrastinate's finish_job

Revision ID: 0014
Revises: 0013
"""

from pgjobs.db.schema import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0014_fail_todo_job.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0014_fail_todo_job.down.sql")
