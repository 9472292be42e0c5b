"""task stats rollups: pgjobs.task_stats from per-task, per-minute rollups

Revision ID: 0020
Revises: 0019
"""

from pgjobs.db.schema import run_sql_file

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0020_task_stats_rollups.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0020_task_stats_rollups.down.sql")
