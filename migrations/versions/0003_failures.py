"""error history, retries, dead letters, circuit breakers

Revision ID: 0003
Revises: 0002
"""

from pgjobs.db.schema import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0003_failures.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0003_failures.down.sql")
