"""What every CLI command shares: settings, output helpers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import click

from pgjobs import logs
from pgjobs.settings import Settings, load_settings


class State:
    """Per-invocation state; settings are read on first use (then logged)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logs.configure(self._settings)
        return self._settings


pass_state = click.make_pass_decorator(State)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def print_json(value: Any) -> None:
    if isinstance(value, list):
        value = [_plain(item) for item in value]
    click.echo(json.dumps(_plain(value), indent=2, default=str))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain aligned table; ``(none)`` when empty."""
    if not rows:
        click.echo("(none)")
        return
    cells = [
        [("" if row.get(c) is None else str(row.get(c))) for c in columns]
        for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    )
    for r in cells:
        click.echo(
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
        )
