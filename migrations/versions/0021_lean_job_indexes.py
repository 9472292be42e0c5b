"""lean job indexes: procrastinate's job indexes pgjobs never reads go

Revision ID: 0021
Revises: 0020
"""

from pgjobs.db.schema import run_sql_file

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0021_lean_job_indexes.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0021_lean_job_indexes.down.sql")
