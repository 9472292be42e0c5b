"""flow control: paused queues, start-by deadlines

Revision ID: 0017
Revises: 0016
"""

from pgjobs.db.schema import run_sql_file

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0017_flow_control.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0017_flow_control.down.sql")
