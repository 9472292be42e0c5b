"""alembic environment for pgjobs' own migrations (see pgjobs.schema)."""

from __future__ import annotations

from alembic import context

from pgjobs.db.schema import VERSION_TABLE, engine_for

config = context.config


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        version_table=VERSION_TABLE,
        transactional_ddl=True,
        output_buffer=config.output_buffer,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: object) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    with engine_for(config.attributes["conninfo"]).begin() as connection:
        run_with(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
