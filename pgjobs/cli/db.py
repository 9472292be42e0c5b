"""``pgjobs db``: schema migrations (alembic) for procrastinate + pgjobs."""

from __future__ import annotations

import click

from pgjobs.cli.common import State, json_option, pass_state, print_json, print_table
from pgjobs.db import connections, schema


@click.group()
def db() -> None:
    """Create and migrate the database schema."""


@db.command()
@click.argument("revision", default="head")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL, touch nothing.")
@pass_state
def upgrade(state: State, revision: str, offline: bool) -> None:
    """Migrate the database up to REVISION (default: head)."""
    if offline:
        click.echo(schema.upgrade_sql(to_revision=revision), nl=False)
        return
    settings = state.settings
    schema.upgrade(settings, revision)
    click.echo(
        f"{connections.describe(settings)} is at revision {schema.current(settings)}"
    )


@db.command()
@click.argument("revision", default="-1")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL, touch nothing.")
@pass_state
def downgrade(state: State, revision: str, offline: bool) -> None:
    """Migrate down to REVISION (default: one step; "base" removes everything)."""
    if offline:
        click.echo(schema.downgrade_sql(to_revision=revision), nl=False)
        return
    settings = state.settings
    schema.downgrade(settings, revision)
    click.echo(
        f"{connections.describe(settings)} is at revision "
        f"{schema.current(settings) or 'base (no pgjobs schema)'}"
    )


@db.command()
@json_option
@pass_state
def current(state: State, as_json: bool) -> None:
    """Show the revision the database is at."""
    settings = state.settings
    found = schema.current(settings)
    head = schema.head()
    if as_json:
        print_json({"current": found, "head": head, "up_to_date": found == head})
        return
    status = (
        "up to date" if found == head else f"head is {head}: run `pgjobs db upgrade`"
    )
    click.echo(f"{found or 'base (no pgjobs schema)'} ({status})")


@db.command()
@json_option
def history(as_json: bool) -> None:
    """List all revisions, newest first."""
    revisions = schema.history()
    if as_json:
        print_json(revisions)
        return
    print_table(
        [
            {
                "revision": r.revision,
                "down": r.down_revision or "base",
                "head": "*" if r.is_head else "",
                "description": r.description,
            }
            for r in revisions
        ],
        ["revision", "down", "head", "description"],
    )
