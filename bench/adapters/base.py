"""The system adapter interface: everything the harness needs from a job system.

Two halves:
- harness side (async, runs in the benchmark process): schema install,
  enqueue clients, and SQL probes on the scratch database;
- worker side (`run_worker`, runs in a `python -m bench.worker` subprocess).

Jobs are identified by a bench-level number `n` (0..N-1) carried in the job
payload; the no-op task hands it to the `Recorder`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import psycopg

from bench.recorder import Recorder

TASK_NAME = "bench_noop"


class EnqueueClient(abc.ABC):
    """An open client able to enqueue no-op jobs; returns the system's job ids."""

    @abc.abstractmethod
    async def enqueue_one(self, n: int) -> int:
        """Enqueue job `n` in its own transaction."""

    @abc.abstractmethod
    async def enqueue_many(self, ns: Sequence[int]) -> list[int]:
        """Enqueue all `ns` with the system's bulk API (one call)."""


@dataclass(frozen=True)
class Verification:
    """What the database says about a set of job ids."""

    total: int  # rows found for the ids
    succeeded: int  # jobs in the system's "done OK" state
    started: int  # start events / pick log rows (must equal `succeeded`)
    failed: int  # anything else terminal (errors, cancels...)


class SystemAdapter(abc.ABC):
    name: ClassVar[str]  # short id, also used for the scratch db name
    #: The scenarios it runs (None: all); the others show a dash.
    scenarios: ClassVar[frozenset[str] | None] = None
    #: pgjobs.notify values the concurrent-enqueue scenario also runs under.
    notify_modes: ClassVar[tuple[str, ...]] = ()

    @property
    def label(self) -> str:
        """Column header, e.g. 'procrastinate 3.10.0'."""
        return self.name

    def notes(self) -> list[str]:
        """Settings worth printing under the table."""
        return []

    def check_available(self) -> None:  # noqa: B027 (optional hook)
        """Raise AdapterUnavailable with a clear message if it cannot run."""

    # --- harness side ---------------------------------------------------
    @abc.abstractmethod
    async def install_schema(self, dsn: str) -> None:
        """Install the system's schema into the (empty) scratch database."""

    @abc.abstractmethod
    def client(self, dsn: str) -> AbstractAsyncContextManager[EnqueueClient]:
        """A fresh client (new DB sessions) for enqueueing."""

    @abc.abstractmethod
    async def pending(self, conn: psycopg.AsyncConnection, ids: Sequence[int]) -> int:
        """How many of `ids` are enqueued and not yet started."""

    @abc.abstractmethod
    async def verify(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> Verification:
        """Final state of `ids` after a worker run."""

    @abc.abstractmethod
    async def drain_window(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> tuple[datetime, datetime]:
        """(first job start, last job completion) for `ids`, from the database."""

    @abc.abstractmethod
    async def seed_finished(self, conn: psycopg.AsyncConnection, count: int) -> None:
        """Insert `count` already-finished jobs, as the system would leave them."""

    async def prune(self, dsn: str) -> int | None:
        """Delete every finished job the way the system's retention does;
        return how many jobs went (None: the system has no retention)."""
        return None

    # --- worker side (subprocess) -----------------------------------------
    @abc.abstractmethod
    def run_worker(
        self, dsn: str, concurrency: int, drain: bool, recorder: Recorder
    ) -> None:
        """Block running one worker. drain=True: exit when the queue is empty;
        else run until SIGTERM."""
