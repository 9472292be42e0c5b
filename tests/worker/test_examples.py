"""The limits example runs and keeps both limits."""

from __future__ import annotations

import re

import pytest

from tests.support import run_example


@pytest.mark.timeout(90)
def test_third_party_api_limits(db_url: str) -> None:
    out = run_example("examples.third_party_api_limits", db_url)
    match = re.search(
        r"(\d+) calls in ([\d.]+) s; at most (\d+) started in any 0.8 s window"
        r" \(limit 10/s\); at most (\d+) at once for one tenant",
        out,
    )
    assert match, out
    calls, took, per_second, per_tenant = match.groups()
    assert int(calls) == 30
    assert int(per_second) <= 10
    assert int(per_tenant) <= 5
    # 30 starts at 10 per s: three windows, so 2 s and the last calls.
    assert 2.0 <= float(took) < 6.0, out
