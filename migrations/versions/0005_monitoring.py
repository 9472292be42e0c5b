"""monitoring views, retention and roles

Revision ID: 0005
Revises: 0004
"""

from pgjobs.db.schema import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0005_monitoring.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0005_monitoring.down.sql")
