"""pgjobs schema and transactional enqueue function

Revision ID: 0002
Revises: 0001
"""

from pgjobs.db.schema import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0002_pgjobs_base.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0002_pgjobs_base.down.sql")
