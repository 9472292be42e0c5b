"""``pgjobs demo``."""

from __future__ import annotations

import logging

import click

from pgjobs import demo as demo_module
from pgjobs.cli.common import State, pass_state
from pgjobs.errors import PgjobsError


@click.command()
@pass_state
def demo(state: State) -> None:
    """Run the end-to-end demo (embedded PostgreSQL unless PGJOBS_DATABASE_URL)."""
    settings = state.settings
    # The demo prints its own story; per-job worker lines would drown it.
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    counts = demo_module.run(settings, echo=click.echo)
    if set(counts) != {"succeeded"}:
        raise PgjobsError(f"demo jobs did not all succeed: {counts}")
