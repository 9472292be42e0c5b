"""Markdown rendering of the collected samples."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.measure import Plan, Samples, drain_key

TIMES, DASH, DOWN = "\u00d7", "\u2013", "\u2193"  # multiplication sign, en dash, arrow


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    digits: int = 0


def metrics(plan: Plan) -> list[Metric]:
    k = _count
    rows = [
        Metric(
            "enqueue_single", f"enqueue, single ({k(plan.single_jobs)} tx)", "jobs/s"
        ),
        Metric(
            "enqueue_bulk", f"enqueue, bulk ({k(plan.bulk_jobs)} in 1 call)", "jobs/s"
        ),
    ]
    clients = f"{plan.concurrent_clients} clients {TIMES} {k(plan.concurrent_jobs)} tx"
    rows += [
        Metric(f"enqueue_concurrent{key}", f"enqueue, {clients}{what}", "jobs/s")
        for key, what in (
            ("", ", no worker"),
            ("_always", ", no worker, pgjobs.notify=always"),
            ("_never", ", no worker, pgjobs.notify=never (no NOTIFY)"),
            ("_worker", ", 1 idle worker running them"),
            ("_worker_always", ", 1 idle worker, pgjobs.notify=always"),
        )
    ]
    for processes, conc in plan.drain_setups:
        who = (
            f"{processes} workers {TIMES} {conc}"
            if processes > 1
            else f"1 worker, c={conc}"
        )
        rows.append(
            Metric(
                drain_key(processes, conc),
                f"process {k(plan.drain_jobs)} no-op jobs, {who}",
                "jobs/s",
            )
        )
    for conc in plan.whole_concurrency:
        rows.append(
            Metric(
                f"whole_c{conc}",
                f"1 worker process, c={conc}, {k(plan.whole_jobs)} no-op jobs, "
                "start to exit",
                "jobs/s",
            )
        )
    for p in (50, 95, 99):
        rows.append(
            Metric(
                f"latency_p{p}",
                f"latency enqueue→start p{p} (idle worker)",
                "ms",
                higher_is_better=False,
                digits=2,
            )
        )
    for key, label in (
        ("enqueue", "enqueue call"),
        ("returned", "enqueue return → task start"),
        ("to_claim", "enqueue start → claim call (claimed jobs)"),
        ("claim", "claim round trip (claimed jobs)"),
        ("to_start", "claim reply → task start (claimed jobs)"),
    ):
        rows.append(
            Metric(
                f"step_{key}",
                f"latency step p50: {label}",
                "ms",
                higher_is_better=False,
                digits=2,
            )
        )
    rows.append(
        Metric(
            "step_unclaimed",
            "latency: jobs started with no claim of the worker's (pushed)",
            "%",
            digits=0,
        )
    )
    rows += [
        Metric(
            "growth_rate",
            f"process {k(plan.growth_jobs)} jobs with {k(plan.growth_seed)} finished "
            f"in table, c={plan.growth_concurrency}",
            "jobs/s",
        ),
        Metric("rss_rate", f"process {k(plan.rss_jobs)} jobs in one drain", "jobs/s"),
        Metric(
            "rss_early",
            f"worker RSS after {k(plan.rss_early)} jobs",
            "MiB",
            higher_is_better=False,
            digits=1,
        ),
        Metric(
            "rss_late",
            f"worker RSS after {k(plan.rss_jobs)} jobs",
            "MiB",
            higher_is_better=False,
            digits=1,
        ),
    ]
    fp = k(plan.footprint_jobs)
    rows += [
        Metric(key, f"{label} ({fp} jobs)", unit, higher_is_better=False, digits=d)
        for key, label, unit, d in (
            ("fp_wal_enqueue", "WAL per job: enqueue (bulk)", "bytes", 0),
            ("fp_wal_run", "WAL per job: run (claim, start, finish)", "bytes", 0),
            ("fp_wal_exit", "WAL per job: worker exit", "bytes", 0),
            ("fp_wal_vacuum", "WAL per job: VACUUM after the run", "bytes", 0),
            ("fp_wal_prune", "WAL per job: retention prune", "bytes", 0),
            ("fp_wal_lifecycle", "WAL per job: whole lifecycle", "bytes", 0),
            (
                "fp_bytes_kept",
                "on disk per finished job, as the worker leaves it",
                "bytes",
                0,
            ),
            (
                "fp_bytes_vacuumed",
                "on disk per finished job, after VACUUM FULL",
                "bytes",
                0,
            ),
            ("fp_prune_us", "retention: time per job pruned", "µs", 1),
            ("fp_wal_hour", "WAL for 1 h at 100M jobs/day (4.17M jobs)", "GiB", 2),
            ("fp_wal_prune_hour", "retention WAL for 1 h at 100M/day", "GiB", 2),
            ("fp_prune_hour_s", "retention time for 1 h at 100M/day", "s", 0),
        )
    ]
    return rows


def _count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(samples: Sequence[float], baseline: Sequence[float] | None, m: Metric) -> str:
    med = statistics.median(samples)
    text = f"**{_num(med, m.digits)}**"
    if len(samples) > 1:
        lo, hi = _num(min(samples), m.digits), _num(max(samples), m.digits)
        text += f" ({lo}{DASH}{hi})"
    if baseline and statistics.median(baseline) != 0:
        text += f" {TIMES}{med / statistics.median(baseline):.2f}"
    return text


def render(
    results: Mapping[str, Samples],
    labels: Mapping[str, str],
    baseline: str,
    plan: Plan,
    skipped: Mapping[str, str],
    notes: Sequence[str] = (),
) -> str:
    systems = list(results)
    header = ["metric", "unit", *(labels[s] for s in systems)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * 2 + "---:|" * len(systems),
    ]
    for m in metrics(plan):
        if not any(m.key in results[s] for s in systems):
            continue
        unit = m.unit + ("" if m.higher_is_better else f" {DOWN}")
        row = [m.label, unit]
        base = results.get(baseline, {}).get(m.key)
        for s in systems:
            samples = results[s].get(m.key)
            if not samples:
                row.append(DASH)
            else:
                row.append(cell(samples, None if s == baseline else base, m))
        lines.append("| " + " | ".join(row) + " |")
    out = ["\n".join(lines), ""]
    out.append(
        f"Median of {plan.runs} run(s), (min{DASH}max), {TIMES}ratio = median / "
        f"{baseline} median; {DOWN} = lower is better. RSS figures: one run."
    )
    out += [f"- {n}" for n in notes]
    out += [f"- {s}: skipped: {why}" for s, why in skipped.items()]
    return "\n".join(out) + "\n"
