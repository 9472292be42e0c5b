"""job pushes: an enqueue hands a new job straight to a waiting worker

Revision ID: 0025
Revises: 0024
"""

from pgjobs.db.schema import run_sql_file

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0025_job_pushes.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0025_job_pushes.down.sql")
