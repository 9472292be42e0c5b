"""runtime schedules and periodic health

Revision ID: 0004
Revises: 0003
"""

from pgjobs.db.schema import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0004_schedules.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0004_schedules.down.sql")
