"""no JIT for the claim function

Revision ID: 0010
Revises: 0009
"""

from pgjobs.db.schema import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0010_no_jit.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0010_no_jit.down.sql")
