"""interrupted jobs: error kind, task_stats, health

Revision ID: 0011
Revises: 0010
"""

from pgjobs.db.schema import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0011_interruptions.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0011_interruptions.down.sql")
