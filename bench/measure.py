"""The measured scenarios. Each one runs `runs` times on fresh scratch
databases, verifies its own result, and returns {metric key: [samples]}."""

from __future__ import annotations

import asyncio
import bisect
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench import db
from bench.adapters.base import SystemAdapter
from bench.errors import BenchError
from bench.workers import (
    check_executions,
    kill_workers,
    start_workers,
    stop_workers,
    wait_workers,
)

Samples = dict[str, list[float]]
CHUNK = 10_000  # max jobs per bulk enqueue call when filling a queue


@dataclass(frozen=True)
class Plan:
    runs: int = 3
    warmup_jobs: int = 200
    single_jobs: int = 2_000
    bulk_jobs: int = 10_000
    concurrent_clients: int = 8
    concurrent_jobs: int = 1_000  # per client
    drain_jobs: int = 10_000
    # (worker processes, concurrency per process)
    drain_setups: tuple[tuple[int, int], ...] = ((1, 1), (1, 10), (1, 50), (2, 10))
    whole_jobs: int = 30_000
    whole_concurrency: tuple[int, ...] = (10, 50)
    latency_jobs: int = 500
    latency_gap: float = 0.02  # s between latency jobs, so the worker is idle
    growth_seed: int = 1_000_000
    growth_jobs: int = 10_000
    growth_concurrency: int = 10
    rss_early: int = 10_000
    rss_jobs: int = 200_000
    footprint_jobs: int = 10_000


QUICK = replace(
    Plan(),
    runs=1,
    warmup_jobs=100,
    single_jobs=300,
    bulk_jobs=2_000,
    concurrent_jobs=200,
    drain_jobs=1_000,
    whole_jobs=3_000,
    latency_jobs=100,
    growth_seed=100_000,
    growth_jobs=2_000,
    rss_early=1_000,
    rss_jobs=20_000,
    footprint_jobs=2_000,
)


@dataclass(frozen=True)
class Context:
    adapter: SystemAdapter
    admin_dsn: str
    plan: Plan
    tmp: Path

    @property
    def dbname(self) -> str:
        return f"bench_{self.adapter.name}"

    @property
    def system(self) -> str:
        return self.adapter.name


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def fill_queue(ctx: Context, dsn: str, ns: range) -> list[int]:
    ids: list[int] = []
    async with ctx.adapter.client(dsn) as client:
        for start in range(ns.start, ns.stop, CHUNK):
            ids += await client.enqueue_many(range(start, min(start + CHUNK, ns.stop)))
    if len(ids) != len(ns):
        raise BenchError(f"enqueued {len(ids)} jobs, expected {len(ns)}")
    return ids


async def verify_done(ctx: Context, dsn: str, ids: Sequence[int]) -> None:
    async with await db.connect(dsn) as conn:
        v = await ctx.adapter.verify(conn, ids)
    n = len(ids)
    if (v.total, v.succeeded, v.started, v.failed) != (n, n, n, 0):
        raise BenchError(f"{ctx.system}: expected {n} jobs succeeded once, got {v}")


async def verify_pending(ctx: Context, dsn: str, ids: Sequence[int]) -> None:
    async with await db.connect(dsn) as conn:
        pending = await ctx.adapter.pending(conn, ids)
    if pending != len(ids) or len(set(ids)) != len(ids):
        raise BenchError(f"{ctx.system}: {pending} of {len(ids)} jobs are queued")


# --- enqueue ---------------------------------------------------------------
async def enqueue_single(ctx: Context) -> Samples:
    n, warm = ctx.plan.single_jobs, ctx.plan.warmup_jobs
    rates = []
    for _ in range(ctx.plan.runs):
        async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
            await ctx.adapter.install_schema(dsn)
            async with ctx.adapter.client(dsn) as client:
                for i in range(n, n + warm):
                    await client.enqueue_one(i)
            await db.analyze(dsn)
            # New client = new sessions: no plan cached on empty tables.
            async with ctx.adapter.client(dsn) as client:
                t0 = time.perf_counter()
                ids = [await client.enqueue_one(i) for i in range(n)]
                elapsed = time.perf_counter() - t0
            await verify_pending(ctx, dsn, ids)
            rates.append(n / elapsed)
    return {"enqueue_single": rates}


async def enqueue_bulk(ctx: Context) -> Samples:
    n, warm = ctx.plan.bulk_jobs, ctx.plan.warmup_jobs
    rates = []
    for _ in range(ctx.plan.runs):
        async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
            await ctx.adapter.install_schema(dsn)
            async with ctx.adapter.client(dsn) as client:
                await client.enqueue_many(range(n, n + warm))
            await db.analyze(dsn)
            async with ctx.adapter.client(dsn) as client:
                t0 = time.perf_counter()
                ids = await client.enqueue_many(range(n))
                elapsed = time.perf_counter() - t0
            await verify_pending(ctx, dsn, ids)
            rates.append(n / elapsed)
    return {"enqueue_bulk": rates}


async def _enqueue_concurrently(ctx: Context, dsn: str, start: int) -> list[int]:
    """``concurrent_clients`` clients, each its own session, each enqueueing
    ``concurrent_jobs`` jobs one transaction per job, all at once."""
    per = ctx.plan.concurrent_jobs

    async def one_client(first: int) -> list[int]:
        async with ctx.adapter.client(dsn) as client:
            return [await client.enqueue_one(i) for i in range(first, first + per)]

    batches = await asyncio.gather(
        *(one_client(start + c * per) for c in range(ctx.plan.concurrent_clients))
    )
    return [i for batch in batches for i in batch]


async def enqueue_concurrent(ctx: Context) -> Samples:
    """Concurrent single-job transactions: with no worker running, then with
    one idle worker (default settings) running the jobs as they come. For
    pgjobs, also under ``pgjobs.notify`` = always (every enqueue notifies,
    as procrastinate does) and never (no NOTIFY at all: the ceiling)."""
    total = ctx.plan.concurrent_clients * ctx.plan.concurrent_jobs
    modes = [("", None), *((f"_{m}", m) for m in ctx.adapter.notify_modes)]
    samples: Samples = {}
    for _ in range(ctx.plan.runs):
        for suffix, mode in modes:
            for with_worker in (False, True):
                if with_worker and (mode == "never" or not ctx.adapter.notify_modes):
                    # never: a worker would only poll, not the comparison;
                    # the other systems: their enqueue figure is the row above
                    # (the comparison is pgjobs against its own modes).
                    continue
                key = f"enqueue_concurrent{'_worker' if with_worker else ''}{suffix}"
                samples.setdefault(key, []).append(
                    await _concurrent_run(ctx, total, mode, with_worker)
                )
                log(f"  {ctx.system} {key}: {samples[key][-1]:,.0f} jobs/s")
    return samples


async def _concurrent_run(
    ctx: Context, total: int, mode: str | None, with_worker: bool
) -> float:
    async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
        await ctx.adapter.install_schema(dsn)
        if mode is not None:
            await db.set_database_setting(
                ctx.admin_dsn, ctx.dbname, "pgjobs.notify", mode
            )
        warm = ctx.plan.warmup_jobs
        warm_ids = await fill_queue(ctx, dsn, range(total, total + warm))
        await db.analyze(dsn)
        workers = []
        if with_worker:
            workers = await start_workers(
                ctx.system, dsn, ctx.tmp, drain=False, expected=total + warm
            )
        try:
            async with await db.connect(dsn) as conn:
                if with_worker:

                    async def drained(ids: Sequence[int] = warm_ids) -> bool:
                        return await ctx.adapter.pending(conn, ids) == 0

                    await wait_until(drained, 120)
                    await asyncio.sleep(0.5)  # let the worker go idle
                t0 = time.perf_counter()
                ids = await _enqueue_concurrently(ctx, dsn, 0)
                elapsed = time.perf_counter() - t0
                if with_worker:

                    async def finished(ids: Sequence[int] = ids) -> bool:
                        v = await ctx.adapter.verify(conn, ids)
                        return v.succeeded + v.failed >= len(ids)

                    await wait_until(finished, 300)
                    outputs = await stop_workers(workers)
                    check_executions(outputs, range(total + warm))
        finally:
            await kill_workers(workers)
        if with_worker:
            await verify_done(ctx, dsn, ids)
        else:
            await verify_pending(ctx, dsn, ids)
    return total / elapsed


# --- processing ------------------------------------------------------------
async def drain_once(
    ctx: Context,
    dsn: str,
    ns: range,
    processes: int,
    concurrency: int,
    rss_at: Sequence[int] = (),
) -> tuple[float, dict[int, int]]:
    """Fill the queue with `ns`, drain it with real worker processes;
    return (jobs/s from the DB's first-start..last-done window, rss by count)."""
    ids = await fill_queue(ctx, dsn, ns)
    await db.analyze(dsn)
    workers = await start_workers(
        ctx.system,
        dsn,
        ctx.tmp,
        processes=processes,
        concurrency=concurrency,
        drain=True,
        expected=ns.stop,
        rss_at=rss_at,
    )
    outputs = await wait_workers(workers, timeout=max(180.0, len(ns) / 20))
    check_executions(outputs, ns)
    await verify_done(ctx, dsn, ids)
    async with await db.connect(dsn) as conn:
        first, last = await ctx.adapter.drain_window(conn, ids)
    elapsed = (last - first).total_seconds()
    if elapsed <= 0:
        raise BenchError(f"empty drain window {first}..{last}")
    rss = {int(k): int(v) for out in outputs for k, v in out["rss"].items()}
    return len(ns) / elapsed, rss


def drain_key(processes: int, concurrency: int) -> str:
    return f"drain_p{processes}_c{concurrency}"


async def whole_processes(ctx: Context) -> Samples:
    """A worker process's wall clock from its start to its exit, start-up
    included: ``whole_jobs`` no-op jobs queued first, then one worker process
    (pgjobs: what ``pgjobs worker --one-shot -c N`` runs; pgqueuer: its
    ``run`` in drain mode) drains them and exits."""
    n = ctx.plan.whole_jobs
    samples: Samples = {}
    for _ in range(ctx.plan.runs):
        for concurrency in ctx.plan.whole_concurrency:
            async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
                await ctx.adapter.install_schema(dsn)
                ids = await fill_queue(ctx, dsn, range(n))
                await db.analyze(dsn)
                t0 = time.perf_counter()
                workers = await start_workers(
                    ctx.system,
                    dsn,
                    ctx.tmp,
                    concurrency=concurrency,
                    drain=True,
                    expected=n,
                )
                outputs = await wait_workers(workers, timeout=max(180.0, n / 20))
                elapsed = time.perf_counter() - t0
                check_executions(outputs, range(n))
                await verify_done(ctx, dsn, ids)
            key = f"whole_c{concurrency}"
            samples.setdefault(key, []).append(n / elapsed)
            log(f"  {ctx.system} {key}: {n / elapsed:,.0f} jobs/s")
    return samples


async def processing(ctx: Context) -> Samples:
    samples: Samples = {}
    for processes, concurrency in ctx.plan.drain_setups:
        key = drain_key(processes, concurrency)
        for _ in range(ctx.plan.runs):
            async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
                await ctx.adapter.install_schema(dsn)
                rate, _ = await drain_once(
                    ctx, dsn, range(ctx.plan.drain_jobs), processes, concurrency
                )
            samples.setdefault(key, []).append(rate)
            log(f"  {ctx.system} {key}: {rate:,.0f} jobs/s")
    return samples


# --- latency ---------------------------------------------------------------
async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for jobs to complete")
        await asyncio.sleep(0.05)


async def latency(ctx: Context) -> Samples:
    n, warm = ctx.plan.latency_jobs, ctx.plan.warmup_jobs
    samples: Samples = {"latency_p50": [], "latency_p95": [], "latency_p99": []}
    samples.update({f"step_{name}": [] for name in (*STEPS, "unclaimed")})
    for _ in range(ctx.plan.runs):
        async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
            await ctx.adapter.install_schema(dsn)
            warm_ids = await fill_queue(ctx, dsn, range(n, n + warm))
            await db.analyze(dsn)
            # Worker with the system's default settings, left running.
            workers = await start_workers(
                ctx.system,
                dsn,
                ctx.tmp,
                drain=False,
                expected=n + warm,
                record_times=True,
            )
            try:
                async with await db.connect(dsn) as conn:

                    async def drained(ids: Sequence[int] = warm_ids) -> bool:
                        return await ctx.adapter.pending(conn, ids) == 0

                    await wait_until(drained, 120)
                    await asyncio.sleep(0.5)  # let the worker go idle
                    enqueued: dict[int, float] = {}
                    returned: dict[int, float] = {}
                    ids: list[int] = []
                    async with ctx.adapter.client(dsn) as client:
                        for i in range(n):
                            enqueued[i] = time.time()
                            ids.append(await client.enqueue_one(i))
                            returned[i] = time.time()
                            await asyncio.sleep(ctx.plan.latency_gap)

                    async def finished(ids: Sequence[int] = ids) -> bool:
                        v = await ctx.adapter.verify(conn, ids)
                        return v.succeeded + v.failed >= len(ids)

                    await wait_until(finished, 120)
                outputs = await stop_workers(workers)
            finally:
                await kill_workers(workers)
            check_executions(outputs, range(n + warm))
            await verify_done(ctx, dsn, ids)
            started = {int(k): v for out in outputs for k, v in out["times"].items()}
            lat = sorted((started[i] - enqueued[i]) * 1000 for i in range(n))
            if lat[0] < 0:
                raise BenchError(f"negative latency {lat[0]:.3f} ms: clock problem")
            pct = statistics.quantiles(lat, n=100, method="inclusive")
            samples["latency_p50"].append(pct[49])
            samples["latency_p95"].append(pct[94])
            samples["latency_p99"].append(pct[98])
            log(f"  {ctx.system} latency p50={pct[49]:.2f} ms p99={pct[98]:.2f} ms")
            claims = sorted(tuple(c) for out in outputs for c in out.get("claims", []))
            for name, value in latency_steps(
                enqueued, returned, started, claims, n
            ).items():
                samples[f"step_{name}"].append(value)
    return samples


#: The latency's steps, medians over the jobs: the enqueue call; its return
#: to the task's start; for the jobs a claim of the worker's got, the enqueue's
#: start to that claim's call (its commit, the notification, the wake-up),
#: the claim's round trip and its reply to the task's start (the step row
#: "unclaimed" is the share of jobs started with no claim: pushed).
STEPS = ("enqueue", "returned", "to_claim", "claim", "to_start")


def latency_steps(
    enqueued: dict[int, float],
    returned: dict[int, float],
    started: dict[int, float],
    claims: Sequence[tuple[float, ...]],
    n: int,
) -> dict[str, float]:
    """Median ms of each step; for each job, the claim is the last one that
    found a job, called after the enqueue began and returned before the job
    started. Empty when the worker's claims were not timed."""
    productive = [c for c in claims if c[2] > 0]
    calls = [c[0] for c in productive]
    steps: dict[str, list[float]] = {name: [] for name in STEPS}
    unclaimed = 0
    for i in range(n):
        steps["enqueue"].append((returned[i] - enqueued[i]) * 1000)
        steps["returned"].append((started[i] - returned[i]) * 1000)
        last = bisect.bisect_right(calls, started[i]) - 1
        if last < 0 or productive[last][0] < enqueued[i]:
            unclaimed += 1  # no claim of its own: pushed by the enqueue
            continue
        call, reply = productive[last][0], productive[last][1]
        if reply > started[i]:
            unclaimed += 1
            continue
        steps["to_claim"].append((call - enqueued[i]) * 1000)
        steps["claim"].append((reply - call) * 1000)
        steps["to_start"].append((started[i] - reply) * 1000)
    medians = {k: statistics.median(v) for k, v in steps.items() if len(v) >= n // 2}
    medians["unclaimed"] = 100.0 * unclaimed / n
    return medians


# --- growth ----------------------------------------------------------------
async def growth(ctx: Context) -> Samples:
    plan = ctx.plan
    samples: Samples = {"growth_rate": []}
    conc = plan.growth_concurrency
    async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
        await ctx.adapter.install_schema(dsn)
        log(f"  {ctx.system}: seeding {plan.growth_seed:,} finished jobs")
        t0 = time.perf_counter()
        async with await db.connect(dsn) as conn:
            await ctx.adapter.seed_finished(conn, plan.growth_seed)
        await db.analyze(dsn, vacuum=True)
        log(f"  {ctx.system}: seeded in {time.perf_counter() - t0:.0f}s")
        # Runs share the seeded database (each adds growth_jobs more rows).
        for run in range(plan.runs):
            ns = range(run * plan.growth_jobs, (run + 1) * plan.growth_jobs)
            rate, _ = await drain_once(ctx, dsn, ns, 1, conc)
            samples["growth_rate"].append(rate)
            log(f"  {ctx.system} growth: {rate:,.0f} jobs/s")
    # Memory: one long drain, RSS sampled in the worker at two job counts.
    async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
        await ctx.adapter.install_schema(dsn)
        log(f"  {ctx.system}: draining {plan.rss_jobs:,} jobs for RSS")
        rate, rss = await drain_once(
            ctx,
            dsn,
            range(plan.rss_jobs),
            1,
            conc,
            rss_at=(plan.rss_early, plan.rss_jobs),
        )
    mib = 1024 * 1024
    samples["rss_early"] = [rss[plan.rss_early] / mib]
    samples["rss_late"] = [rss[plan.rss_jobs] / mib]
    samples["rss_rate"] = [rate]
    return samples


Scenario = Callable[[Context], Awaitable[Samples]]
SCENARIOS: dict[str, Scenario] = {
    "enqueue": lambda ctx: _both(ctx, enqueue_single, enqueue_bulk),
    "concurrent": enqueue_concurrent,
    "processing": processing,
    "processes": whole_processes,
    "latency": latency,
    "growth": growth,
    "footprint": lambda ctx: _footprint(ctx),
}


async def _footprint(ctx: Context) -> Samples:
    from bench.footprint import footprint  # it builds on this module

    return await footprint(ctx)


async def _both(ctx: Context, *scenarios: Scenario) -> Samples:
    out: Samples = {}
    for scenario in scenarios:
        out.update(await scenario(ctx))
    return out
