"""pgjobs: STUB, skipped until completed (see bench/README.md, "Adding pgjobs").

pgjobs.App subclasses procrastinate.App, so the finished adapter is the
procrastinate one with `build_app` returning a `pgjobs.App` on the scratch
database, `install_schema` applying pgjobs' own migrations, and the SQL probes
(VERIFY/PENDING/WINDOW/SEED) adjusted if pgjobs changes the job/event tables.
"""

from __future__ import annotations

from bench.adapters.procrastinate_adapter import ProcrastinateAdapter
from bench.errors import AdapterUnavailable

# Flip to True once build_app/install_schema below are filled in.
IMPLEMENTED = False


class PgjobsAdapter(ProcrastinateAdapter):
    name = "pgjobs"
    distribution = "pgjobs"

    def check_available(self) -> None:
        try:
            import pgjobs.app  # noqa: F401
        except ImportError as exc:
            raise AdapterUnavailable(f"`import pgjobs.app` failed: {exc}") from exc
        if not IMPLEMENTED:
            raise AdapterUnavailable(
                "adapter not implemented yet (bench/adapters/pgjobs_adapter.py; "
                "see bench/README.md)"
            )

    # To complete (sketch):
    #
    # def build_app(self, dsn, on_job=None):
    #     import pgjobs
    #     from pgjobs.settings import load_settings
    #     app = pgjobs.App(settings=load_settings(database_url=dsn))
    #     self.register_task(app, on_job)
    #     return app
    #
    # async def install_schema(self, dsn):
    #     from pgjobs import schema
    #     await asyncio.to_thread(schema.upgrade, dsn)   # alembic "head"
