"""``pgjobs dashboard``: serve the operator's web page."""

from __future__ import annotations

import click

from pgjobs.cli.common import State, pass_state
from pgjobs.errors import ConfigError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--read-only",
    is_flag=True,
    help="Show no action and no job arguments; refuse every POST.",
)
@pass_state
def dashboard(state: State, host: str, port: int, read_only: bool) -> None:
    """Serve the dashboard (needs pgjobs[dashboard]); basic auth with
    PGJOBS_DASHBOARD_USERNAME/PASSWORD."""
    settings = state.settings
    try:
        from pgjobs.dashboard import server
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs its extra: pip install 'pgjobs[dashboard]' ({exc})"
        ) from None
    server.serve(
        settings,
        host=host,
        port=port,
        read_only=read_only,
        announce=lambda url: click.echo(
            f"pgjobs dashboard on {url}" + (" (read-only)" if read_only else ""),
            err=True,
        ),
    )
