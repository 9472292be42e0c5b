"""``pgjobs``: the admin command line, a thin skin over pgjobs' Python API.

Each command parses, calls one API function and prints (a table for people,
``--json`` for machines). User mistakes print one line and exit non-zero.
"""

from __future__ import annotations

import sys

import click

from pgjobs.cli import db, demo, worker
from pgjobs.cli.breakers import breakers
from pgjobs.cli.common import State
from pgjobs.cli.dashboard import dashboard
from pgjobs.cli.defer import defer
from pgjobs.cli.dlq import dlq
from pgjobs.cli.events import events
from pgjobs.cli.jobs import jobs
from pgjobs.cli.limits import limits
from pgjobs.cli.monitoring import health, metrics, stats
from pgjobs.cli.queues import queues
from pgjobs.cli.retention import prune
from pgjobs.cli.roles import roles
from pgjobs.cli.schedules import schedules
from pgjobs.errors import PgjobsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pgjobs")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """pgjobs: Postgres-native background jobs on procrastinate.

    The database comes from PGJOBS_DATABASE_URL (environment or .env); when it
    is unset, pgjobs runs an embedded PostgreSQL kept in .pgjobs/postgres at
    the project root (else ~/.local/share/pgjobs/postgres).
    """
    ctx.obj = State()


cli.add_command(db.db)
cli.add_command(worker.worker)
cli.add_command(demo.demo)
cli.add_command(jobs)
cli.add_command(queues)
cli.add_command(limits)
cli.add_command(dlq)
cli.add_command(breakers)
cli.add_command(stats)
cli.add_command(health)
cli.add_command(defer)
cli.add_command(prune)
cli.add_command(metrics)
cli.add_command(roles)
cli.add_command(schedules)
cli.add_command(dashboard)
cli.add_command(events)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except PgjobsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # One line, as pgjobs' own errors (click adds a usage line and a
        # hint); usage errors exit 2.
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see {exc.ctx.command_path} --help)"
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
