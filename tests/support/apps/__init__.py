"""The Apps the tests run: each one a task set the tests name by dotted path
(``--app tests.support.apps.<module>.app``)."""

from __future__ import annotations

import importlib

#: The Apps whose tasks record their runs in a table of their own.
_RECORDING = ("compat", "deploys", "flow", "limits", "records", "schedules")


def runs_tables() -> list[str]:
    """The ``CREATE TABLE IF NOT EXISTS`` of every App's runs table."""
    return [
        importlib.import_module(f"{__name__}.{name}").RUNS_TABLE for name in _RECORDING
    ]
