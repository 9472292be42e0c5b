"""hot path: claims, group finishes and enqueues planned once per connection

Revision ID: 0007
Revises: 0006
"""

from pgjobs.db.schema import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0007_plan_cache.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0007_plan_cache.down.sql")
