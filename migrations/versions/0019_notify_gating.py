"""notify gating: enqueues notify only while a worker waits

Revision ID: 0019
Revises: 0018
"""

from pgjobs.db.schema import run_sql_file

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0019_notify_gating.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0019_notify_gating.down.sql")
