"""What every CLI command shares: settings, output helpers."""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

import click

from pgjobs.errors import AppNotFound, InvalidPayload
from pgjobs.monitoring import logs
from pgjobs.settings import Settings, load_settings

if TYPE_CHECKING:
    from pgjobs.app import App


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

    def load_app(self, app_path: str | None) -> App:
        """The App at ``--app`` (or ``PGJOBS_APP``), imported."""
        from pgjobs.worker import running as worker_module

        settings = self.settings  # read (and logging set up) in every case
        path = app_path or settings.app
        if not path:
            raise AppNotFound(
                "no app given: pass --app mypackage.jobs.app or set PGJOBS_APP"
            )
        # As uvicorn and celery do: the project folder the command runs in
        # is importable even through the installed `pgjobs` script.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return worker_module.load_app(path)


pass_state = click.make_pass_decorator(State)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)

app_option = click.option(
    "--app", "app_path", help="Dotted path of your App (or PGJOBS_APP)."
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> datetime.timedelta:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` (a bare number is seconds)."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    # A bad option value is a usage error: exit 2, as click's own.
    try:
        amount = float(number)
    except ValueError:
        raise click.UsageError(
            f"invalid age {text!r}: use e.g. 30s, 15m, 12h, 7d, 2w"
        ) from None
    if amount < 0 or not math.isfinite(amount):
        raise click.UsageError(
            f"invalid age {text!r}: must be a finite, non-negative duration"
        )
    return datetime.timedelta(seconds=amount * _UNITS[unit])


def parse_args_json(text: str) -> dict[str, Any]:
    """``--args``: a JSON object of the task's keyword arguments."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"--args is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidPayload(
            '--args must be a JSON object of keyword arguments, e.g. {"order_id": 42}'
        )
    return payload


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def json_text(value: Any) -> str:
    """A value (e.g. job arguments) as compact JSON on one line."""
    return json.dumps(value, ensure_ascii=False, default=str)


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
