"""The fault scenarios of ``python -m faults``, small: nothing may be lost.

Real worker processes, real SIGKILLs, a real database restart (on a cluster
these tests start themselves) and real terminated connections; every count
comes from the database (see faults/scenarios.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faults import deploys, failover, limits, pooler, scenarios
from faults.__main__ import table
from faults.cluster import Cluster
from tests.support import need_pgbouncer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def check(result: scenarios.Result) -> None:
    print(table([result]))
    assert result.lost == 0, result
    assert result.succeeded == result.jobs, result
    assert result.unexplained_duplicates == 0, result
    assert result.uncounted_runs == 0, result
    assert result.lock_violations == 0, result
    assert result.priority_violations == 0, result
    assert result.errors == 0, result


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    own = Cluster()
    yield own
    own.close()


@pytest.mark.parametrize("prefetch", [0, 10])
def test_worker_killed_again_and_again(db_url: str, prefetch: int) -> None:
    result = scenarios.worker_crashes(
        db_url, jobs=600, kill_every=1.5, prefetch=prefetch
    )
    check(result)
    assert result.notes[0] != "0 kills"


def test_database_restart(cluster: Cluster) -> None:
    result = scenarios.database_restart(cluster, jobs=600, down=3.0)
    check(result)
    [outage] = [n for n in result.notes if n.startswith("enqueue during outage")]
    assert "DatabaseUnavailable: cannot connect to the database" in outage
    assert "postgres:***@" in outage or "***" not in outage


def test_connections_terminated(db_url: str) -> None:
    result = scenarios.connections_cut(db_url, jobs=600, cuts=8)
    check(result)
    assert not result.notes[0].startswith("0 ")


def test_locks_queueing_locks_and_priorities_under_concurrency(db_url: str) -> None:
    check(scenarios.concurrency(db_url, jobs=1_500, workers_n=4, per_worker=20))


def test_pooler_workers_killed(db_url: str) -> None:
    """4 enqueuers and 3 workers through transaction-mode PgBouncer."""
    need_pgbouncer()
    result = pooler.pooler(db_url, jobs=600, kill_every=2.0)
    check(result)
    assert result.stuck == 0, result
    assert result.health_truthful is True, result
    assert result.ok, result


def test_connection_shortage_at_start() -> None:
    result = pooler.shortage(jobs=200, hold=3.0)
    check(result)
    assert result.stuck == 0, result
    assert result.health_truthful is True, result
    assert result.ok, result


@pytest.mark.parametrize("synchronous", [True, False], ids=["sync", "async"])
def test_failover_under_load(synchronous: bool) -> None:
    result = failover.promote_under_load(synchronous, load_before=2.0, load_after=3.0)
    print(table([result]))
    assert result.jobs > 100, result
    assert result.lost == 0, result
    assert result.stuck == 0, result
    assert result.health_truthful is True, result
    assert result.unexplained_duplicates == 0, result
    assert result.uncounted_runs == 0, result
    assert result.errors == 0, result
    if synchronous:
        assert result.lag_window_lost is None
        assert result.succeeded == result.jobs, result
    else:
        assert result.lag_window_lost is not None
        assert result.succeeded + result.lag_window_lost == result.jobs, result


def test_rolling_deploy_with_a_short_grace(db_url: str) -> None:
    result = deploys.rolling_deploy(db_url, long_jobs=4, short_per_round=100, rounds=1)
    check(result)
    assert result.stuck == 0, result
    assert result.health_truthful is True, result
    [interruptions] = [n for n in result.notes if "handed back free" in n]
    assert not interruptions.startswith("0 "), result  # the grace interrupted jobs


def test_limits_hold_while_workers_are_killed(db_url: str) -> None:
    result = limits.limits_under_kills(db_url, jobs=200, kill_every=1.5)
    print(table([result]))
    assert result.lost == 0, result
    assert result.succeeded == result.jobs, result
    assert result.lock_violations == 0, result  # no limit exceeded, any window
    assert result.errors == 0, result
    assert result.notes[0] != "0 kills"
