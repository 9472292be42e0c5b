"""procrastinate 3.10.0 schema (adopted if already installed)

Revision ID: 0001
Revises:
"""

from alembic import context

from pgjobs.db.schema import run_sql_file, scalar
from pgjobs.errors import SchemaError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# procrastinate_retry_job_v2 is the newest object of procrastinate 3.10.0's
# schema: older installs lack it.
_HAS_NEWEST_OBJECT = (
    "SELECT count(*) > 0 FROM pg_proc WHERE proname = 'procrastinate_retry_job_v2'"
)


def upgrade() -> None:
    if not context.is_offline_mode() and scalar(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL"
    ):
        # Installed earlier by `procrastinate schema --apply`: adopt it.
        if not scalar(_HAS_NEWEST_OBJECT):
            raise SchemaError(
                "this database has an older procrastinate schema: apply "
                "procrastinate's migrations up to 3.10.0 first, then run "
                "`pgjobs db upgrade`"
            )
        return
    run_sql_file("migrations/0001_procrastinate_3.10.0.up.sql")


def downgrade() -> None:
    run_sql_file("migrations/0001_procrastinate_3.10.0.down.sql")
