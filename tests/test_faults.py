"""The fault scenarios of ``python -m faults``, small: nothing may be lost.

Real worker processes, real SIGKILLs, a real database restart (on a cluster
these tests start themselves) and real terminated connections; every count
comes from the database (see faults/scenarios.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faults import scenarios
from faults.__main__ import table
from faults.cluster import Cluster

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
