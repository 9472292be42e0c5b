"""Starting, awaiting and stopping `python -m bench.worker` subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    out: Path
    log: Path

    def output(self) -> dict[str, Any]:
        if not self.out.exists():
            raise BenchError(f"worker wrote no result; log:\n{self.tail()}")
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def start_workers(
    system: str,
    dsn: str,
    tmp: Path,
    *,
    processes: int = 1,
    concurrency: int = 0,
    drain: bool = True,
    expected: int = 0,
    rss_at: Sequence[int] = (),
    record_times: bool = False,
) -> list[WorkerProcess]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    workers = []
    for i in range(processes):
        out = tmp / f"{system}-worker{i}.json"
        log = tmp / f"{system}-worker{i}.log"
        out.unlink(missing_ok=True)
        args = [
            "-m",
            "bench.worker",
            "--system",
            system,
            "--dsn",
            dsn,
            "--concurrency",
            str(concurrency),
            "--out",
            str(out),
            "--expected",
            str(expected),
        ]
        args += [a for n in rss_at for a in ("--rss-at", str(n))]
        args += ["--drain"] if drain else []
        args += ["--record-times"] if record_times else []
        with log.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                cwd=REPO_ROOT,
                env=env,
                stdout=log_file,
                stderr=log_file,
            )
        workers.append(WorkerProcess(proc, out, log))
    return workers


async def wait_workers(
    workers: Iterable[WorkerProcess], timeout: float
) -> list[dict[str, Any]]:
    """Wait for (drain-mode) workers to exit by themselves; return outputs."""
    workers = list(workers)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(w.proc.wait() for w in workers))
    except TimeoutError:
        await kill_workers(workers)
        raise BenchError(
            f"workers did not finish within {timeout:.0f}s; log:\n{workers[0].tail()}"
        ) from None
    for w in workers:
        if w.proc.returncode != 0:
            raise BenchError(f"worker exited with {w.proc.returncode}:\n{w.tail()}")
    return [w.output() for w in workers]


async def stop_workers(
    workers: Iterable[WorkerProcess], timeout: float = 30
) -> list[dict[str, Any]]:
    """SIGTERM (graceful shutdown), then collect outputs."""
    workers = list(workers)
    for w in workers:
        if w.proc.returncode is None:
            w.proc.send_signal(signal.SIGTERM)
    return await wait_workers(workers, timeout)


async def kill_workers(workers: Iterable[WorkerProcess]) -> None:
    for w in workers:
        if w.proc.returncode is None:
            w.proc.kill()
            await w.proc.wait()


def check_executions(
    outputs: Sequence[dict[str, Any]], expected: Iterable[int]
) -> None:
    """Every expected job ran exactly once, across all worker processes."""
    counts: Counter[int] = Counter()
    for out in outputs:
        counts.update(out["executed"])
        if out["duplicates"]:
            raise BenchError(f"jobs ran twice in one worker: {out['duplicates'][:10]}")
    twice = [n for n, c in counts.items() if c > 1]
    if twice:
        raise BenchError(f"{len(twice)} jobs ran in two workers, e.g. {twice[:10]}")
    wanted = set(expected)
    missing = wanted - counts.keys()
    if missing:
        raise BenchError(f"{len(missing)} jobs never ran, e.g. {sorted(missing)[:10]}")
    unknown = counts.keys() - wanted
    if unknown:
        raise BenchError(f"{len(unknown)} unexpected jobs ran: {sorted(unknown)[:10]}")
