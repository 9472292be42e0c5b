"""Registry of system adapters. Add a system by adding a module and a line here."""

from __future__ import annotations

from bench.adapters.base import SystemAdapter
from bench.adapters.pgjobs_adapter import (
    PgjobsAdapter,
    PgjobsCeilingAdapter,
    PgjobsPrefetchAdapter,
)
from bench.adapters.pgqueuer_adapter import PgqueuerAdapter
from bench.adapters.procrastinate_adapter import ProcrastinateAdapter

ADAPTERS: dict[str, type[SystemAdapter]] = {
    cls.name: cls
    for cls in (
        ProcrastinateAdapter,
        PgqueuerAdapter,
        PgjobsAdapter,
        PgjobsPrefetchAdapter,
        PgjobsCeilingAdapter,
    )
}
BASELINE = ProcrastinateAdapter.name


def get_adapter(name: str) -> SystemAdapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise SystemExit(
            f"unknown system {name!r}; choose from {', '.join(ADAPTERS)}"
        ) from None
