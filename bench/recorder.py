"""Per-worker-process execution record, dumped as JSON when the worker exits.

Kept deliberately small (a bytearray indexed by job number) so that recording
does not distort the worker RSS figures.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]


class Recorder:
    def __init__(
        self,
        expected: int = 0,
        rss_at: tuple[int, ...] = (),
        record_times: bool = False,
    ) -> None:
        self.seen = bytearray(expected)
        self.count = 0
        self.duplicates: list[int] = []
        self.rss: dict[int, int] = {}
        self._rss_at = frozenset(rss_at)
        self._times: dict[int, float] | None = {} if record_times else None
        #: With record_times: each claim statement's (call, return, jobs found).
        self.claims: list[tuple[float, float, int]] = []
        self._process = psutil.Process()

    def record(self, n: int) -> None:
        """Called first thing by the no-op task with its job number."""
        now = time.time()
        if self._times is not None:
            self._times[n] = now
        if n >= len(self.seen):
            self.seen.extend(bytes(n + 1 - len(self.seen)))
        if self.seen[n]:
            self.duplicates.append(n)
        self.seen[n] = 1
        self.count += 1
        if self.count in self._rss_at:
            self.rss[self.count] = self._process.memory_info().rss

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "executed": [n for n, flag in enumerate(self.seen) if flag],
            "duplicates": self.duplicates,
            "rss": {str(k): v for k, v in self.rss.items()},
            "times": {str(k): v for k, v in (self._times or {}).items()},
            "claims": self.claims,
        }

    def time_claims(
        self, owner: Any, name: str, found: Callable[[Any], int] = len
    ) -> None:
        """With record_times: time ``owner.name``, a system's claim call (an
        async method of one instance), for the latency scenario's steps."""
        if self._times is None:
            return
        claim: Callable[..., Awaitable[Any]] = getattr(owner, name)

        @functools.wraps(claim)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.time()
            result = await claim(*args, **kwargs)
            self.claims.append((began, time.time(), found(result)))
            return result

        setattr(owner, name, timed)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))
