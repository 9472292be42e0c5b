"""dashboard audit log and the failed-jobs index

Revision ID: 0012
Revises: 0011
"""

from pgjobs.db.schema import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0012_dashboard.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0012_dashboard.down.sql")
