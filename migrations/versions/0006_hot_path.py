"""worker hot path: batch claim, batch finish, resilient heartbeat

Revision ID: 0006
Revises: 0005
"""

from pgjobs.db.schema import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0006_hot_path.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0006_hot_path.down.sql")
