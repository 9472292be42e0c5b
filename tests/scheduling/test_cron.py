"""Cron expressions, intervals and missed-run planning (no database)."""

from __future__ import annotations

import datetime

import pytest

from pgjobs import InvalidSchedule
from pgjobs.scheduling.cron import Timing, check_cron, interval_as_cron
from pgjobs.scheduling.ticker import plan_ticks

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # a Monday
SECOND = datetime.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 0 * * *", datetime.timedelta(days=1)),  # daily at midnight
        ("0 */2 * * *", datetime.timedelta(hours=2)),  # every 2 hours
        ("0 9 * * 1-5", datetime.timedelta(days=3)),  # weekdays at 9 (Fri->Mon)
        ("0 0 1 * *", datetime.timedelta(days=31)),  # first of the month
        ("*/30 * * * *", datetime.timedelta(minutes=30)),
        ("* * * * * *", SECOND),  # 6th field: seconds
        ("* * * * * */10", datetime.timedelta(seconds=10)),
        ("@hourly", datetime.timedelta(hours=1)),
    ],
)
def test_expected_interval_is_the_longest_gap(
    cron: str, expected: datetime.timedelta
) -> None:
    assert Timing.of(cron, None).expected_interval() == expected


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "61 * * * *", "* * * * * * *", "every day", "0 0 * * 8"]
)
def test_malformed_cron_is_refused(cron: str) -> None:
    with pytest.raises(InvalidSchedule, match="invalid cron expression"):
        check_cron(cron)


def test_cron_ticks_are_utc_and_strictly_ordered() -> None:
    timing = Timing.of("0 9 * * 1-5", None)
    assert timing.next_after(T0) == datetime.datetime(2026, 3, 3, 9, tzinfo=UTC)
    assert timing.at_or_before(T0) == datetime.datetime(2026, 3, 2, 9, tzinfo=UTC)
    nine = datetime.datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert timing.at_or_before(nine) == nine
    assert timing.next_after(nine) == datetime.datetime(2026, 3, 3, 9, tzinfo=UTC)
    friday = datetime.datetime(2026, 3, 6, 9, tzinfo=UTC)
    assert list(timing.ticks(friday, friday + datetime.timedelta(days=3))) == [
        friday,
        friday + datetime.timedelta(days=3),
    ]


def test_interval_ticks_are_aligned_on_the_epoch() -> None:
    timing = Timing.of(None, 60)
    moment = T0 + datetime.timedelta(seconds=30)
    assert timing.at_or_before(moment) == T0
    assert timing.next_after(moment) == T0 + datetime.timedelta(minutes=1)
    assert timing.next_after(T0) == T0 + datetime.timedelta(minutes=1)
    assert timing.expected_interval() == datetime.timedelta(minutes=1)
    with pytest.raises(InvalidSchedule):
        Timing.of(None, 0.5)
    with pytest.raises(InvalidSchedule):
        Timing.of("* * * * *", 60)


def test_interval_as_cron() -> None:
    assert interval_as_cron(1) == "* * * * * *"
    assert interval_as_cron(15) == "* * * * * */15"
    assert interval_as_cron(60) == "* * * * *"
    assert interval_as_cron(30 * 60) == "*/30 * * * *"
    assert interval_as_cron(7200) == "0 */2 * * *"
    assert interval_as_cron(86400) == "0 0 * * *"
    with pytest.raises(InvalidSchedule, match="runtime schedule"):
        interval_as_cron(90)


def _plan(
    cron: str, since: datetime.datetime, now: datetime.datetime, policy: str, cap: int
) -> list[tuple[datetime.datetime, str]]:
    return plan_ticks(
        Timing.of(cron, None),
        since,
        now,
        missed_runs=policy,
        max_catch_up=cap,
        window=datetime.timedelta(seconds=5),
    )


def test_on_time_ticks_always_run() -> None:
    now = T0 + datetime.timedelta(seconds=2.5)
    plan = _plan("* * * * * *", T0, now, "skip", 100)
    assert plan == [(T0 + i * SECOND, "tick") for i in range(3)]


def test_missed_ticks_follow_the_policy() -> None:
    hourly = "0 * * * *"
    since = T0 - datetime.timedelta(hours=10)  # 10 missed ticks, then T0 on time
    now = T0 + datetime.timedelta(seconds=1)
    assert _plan(hourly, since, now, "skip", 100) == [(T0, "tick")]
    assert _plan(hourly, since, now, "once", 100) == [
        (T0 - datetime.timedelta(hours=1), "catch_up"),
        (T0, "tick"),
    ]
    plan = _plan(hourly, since, now, "all", 100)
    assert [trigger for _, trigger in plan] == ["catch_up"] * 10 + ["tick"]
    assert plan[0][0] == since
    capped = _plan(hourly, since, now, "all", 3)
    assert [tick for tick, _ in capped] == [
        T0 - datetime.timedelta(hours=h) for h in (3, 2, 1, 0)
    ]
    # No tick is due on time: skip enqueues nothing.
    late = T0 + datetime.timedelta(minutes=30)
    assert _plan(hourly, since, late, "skip", 100) == []


def test_a_long_outage_costs_no_more_than_the_cap() -> None:
    since = T0 - datetime.timedelta(days=365)
    plan = _plan("* * * * * *", since, T0 + datetime.timedelta(minutes=1), "all", 5)
    assert len(plan) == 5 + 6  # 5 catch-ups + ticks within the 5 s window
