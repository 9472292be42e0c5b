"""job deletes: one statement trigger clears a deletion's rows (no per-row foreign keys)

Revision ID: 0023
Revises: 0022
"""

from pgjobs.db.schema import run_sql_file

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0023_job_deletes.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0023_job_deletes.down.sql")
