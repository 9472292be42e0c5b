"""Database schema admin API: alembic migrations for procrastinate + pgjobs.

pgjobs keeps its own alembic version table (``pgjobs_alembic_version``) so it
never collides with the application's alembic history. These functions are
what ``pgjobs db ...`` calls; applications can call them from Python or from
their own alembic ``env.py`` (pass ``connection=``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from pgjobs.db import connections, queries, resources
from pgjobs.errors import PermissionDenied, ReadOnlyDatabase, SchemaError
from pgjobs.settings import Settings

if TYPE_CHECKING:  # alembic and SQLAlchemy are imported on use: CLI start-up
    import sqlalchemy
    from alembic.config import Config

VERSION_TABLE = "pgjobs_alembic_version"


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    description: str
    is_head: bool


def _config(
    target: Settings | str | None = None,
    *,
    connection: sqlalchemy.Connection | None = None,
    output: io.StringIO | None = None,
) -> Config:
    from alembic.config import Config

    config = Config(output_buffer=output, stdout=output or io.StringIO())
    config.set_main_option("script_location", str(resources.migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    elif target is not None:
        info = connections.conninfo(target) if isinstance(target, Settings) else target
        connections.connect(info).close()  # unreachable database: one clear error
        config.attributes["conninfo"] = info
    return config


def engine_for(conninfo: str) -> sqlalchemy.Engine:
    """A SQLAlchemy engine on psycopg 3 for any libpq conninfo (incl. sockets)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(
        "postgresql+psycopg://",
        # pgjobs' options (prepared statements off, ?prepare_threshold=).
        creator=lambda: connections.connect(conninfo),
        poolclass=NullPool,
    )


def _run(action: Any, *args: Any) -> None:
    import sqlalchemy.exc

    try:
        action(*args)
    except (psycopg.Error, sqlalchemy.exc.DBAPIError) as exc:
        orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
        error = queries.translation(orig) if orig is not None else None
        if isinstance(error, PermissionDenied | ReadOnlyDatabase):
            raise type(error)(f"migration failed: {error}") from None
        raise SchemaError(f"migration failed: {str(orig).splitlines()[0]}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("alembic"):
            raise SchemaError(str(exc).splitlines()[0]) from None
        raise


def upgrade(
    target: Settings | str | None = None,
    revision: str = "head",
    *,
    connection: sqlalchemy.Connection | None = None,
) -> None:
    """Bring the database to ``revision`` (default: the latest)."""
    from alembic import command

    _run(command.upgrade, _config(target, connection=connection), revision)


def downgrade(
    target: Settings | str | None = None,
    revision: str = "-1",
    *,
    connection: sqlalchemy.Connection | None = None,
) -> None:
    """Step the schema back to ``revision`` ("base" removes everything)."""
    from alembic import command

    _run(command.downgrade, _config(target, connection=connection), revision)


def upgrade_sql(from_revision: str | None = None, to_revision: str = "head") -> str:
    """The SQL ``upgrade`` would run, without a database (offline mode)."""
    from alembic import command

    output = io.StringIO()
    config = _config(output=output)
    span = f"{from_revision}:{to_revision}" if from_revision else to_revision
    _run(command.upgrade, config, span, True)
    return output.getvalue()


def downgrade_sql(from_revision: str = "head", to_revision: str = "base") -> str:
    """The SQL ``downgrade`` would run; ``to_revision`` may be ``FROM:TO``."""
    from alembic import command

    given = to_revision
    if ":" in to_revision:
        from_revision, _, to_revision = to_revision.partition(":")
    if ":" in to_revision or not from_revision or not to_revision:
        raise SchemaError(f"invalid revision range {given!r}: use FROM:TO")
    output = io.StringIO()
    _run(
        command.downgrade,
        _config(output=output),
        f"{from_revision}:{to_revision}",
        True,
    )
    return output.getvalue()


def current(target: Settings | str) -> str | None:
    """The revision the database is at, or ``None`` if pgjobs never migrated it."""
    info = connections.conninfo(target) if isinstance(target, Settings) else target
    connections.connect(info).close()
    import sqlalchemy.exc
    from alembic.runtime.migration import MigrationContext

    engine = engine_for(info)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}
            )
            return context.get_current_revision()
    except sqlalchemy.exc.DBAPIError as exc:
        orig: BaseException = exc.orig if exc.orig is not None else exc
    try:  # e.g. a role that may not read the version table: one clear line
        with queries.translated_errors():
            raise orig
    except psycopg.Error:
        raise SchemaError(
            f"cannot read the schema version: {str(orig).splitlines()[0]}"
        ) from None


def history() -> list[Revision]:
    """All revisions, newest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    heads = set(script.get_heads())
    return [
        Revision(
            revision=rev.revision,
            down_revision=rev.down_revision,  # type: ignore[arg-type]
            description=(rev.doc or "").strip(),
            is_head=rev.revision in heads,
        )
        for rev in script.walk_revisions()
    ]


def head() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    head_revision = script.get_current_head()
    assert head_revision is not None
    return head_revision


# -- helpers for the revision scripts in migrations/versions ---------------


def run_sql_file(relative_path: str) -> None:
    """Apply one SQL file from ``sql/`` inside the current migration."""
    from alembic import op

    text = resources.read_sql(relative_path)
    context = op.get_context()
    if context.as_sql:
        context.impl.static_output(text)
        return
    op.get_bind().connection.driver_connection.execute(text)  # type: ignore[union-attr]


def scalar(sql_text: str) -> Any:
    """One value from a read-only query inside the current (online) migration."""
    from alembic import op

    return op.get_bind().exec_driver_sql(sql_text).scalar()
