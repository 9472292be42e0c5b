"""volume: finished jobs keep no worker_id; health check xmin_horizon

Revision ID: 0016
Revises: 0015
"""

from pgjobs.db.schema import run_sql_file

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0016_volume.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0016_volume.down.sql")
