"""Cron expressions and intervals: validation, ticks, expected interval.

pgjobs uses croniter, as procrastinate does: 5 fields (minute hour
day-of-month month day-of-week) or 6, where the 6th is **seconds**
(``* * * * * */10`` = every 10 seconds). ``@hourly``, ``@daily``,
``@weekly``, ``@monthly``, ``@yearly`` are accepted too. Times are UTC.

Interval schedules tick at whole multiples of the interval since the Unix
epoch (every 60 s = at second 0 of each minute, every 3600 s = on the hour
UTC), so every worker computes the same ticks without sharing state.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

from pgjobs.errors import InvalidSchedule

UTC = datetime.UTC
_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight"}
_ALIASES |= {"@hourly"}
#: Ticks sampled to find a cron's longest gap (its expected interval).
_SAMPLE_TICKS = 400
_SAMPLE_SPAN = datetime.timedelta(days=800)


#: The fields of a cron expression, in order, with the values each takes.
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
    ("second", "0-59"),
)


def check_cron(expression: str) -> str:
    """The expression, stripped; ``InvalidSchedule`` if it is not valid cron
    (naming the field at fault) or never fires (``0 0 31 2 *``)."""
    text = " ".join(expression.split())
    fields = text.split(" ")
    if text.lower() in _ALIASES:
        return text.lower()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week) and optional seconds "
            f"as a 6th, e.g. '0 0 * * *'; got {len(fields)}"
        )
    if not croniter.is_valid(text):
        for index, value in enumerate(fields):
            alone = ["*"] * len(fields)
            alone[index] = value
            if not croniter.is_valid(" ".join(alone)):
                name, allowed = _FIELDS[index]
                raise InvalidSchedule(
                    f"invalid cron expression {expression!r}: {name} field "
                    f"{value!r} is not valid (values {allowed}, with *, ranges "
                    "a-b, lists a,b and steps /n where n >= 1)"
                )
        raise InvalidSchedule(f"invalid cron expression {expression!r}")
    try:
        croniter(text, datetime.datetime(2024, 1, 1, tzinfo=UTC)).get_next(
            datetime.datetime
        )
    except CroniterBadDateError:
        raise InvalidSchedule(
            f"cron expression {expression!r} never fires (no such date)"
        ) from None
    return text


def check_interval(seconds: float) -> int:
    if isinstance(seconds, bool) or not float(seconds).is_integer() or seconds < 1:
        raise InvalidSchedule(
            f"invalid interval {seconds!r}: a whole number of seconds >= 1"
        )
    return int(seconds)


@dataclass(frozen=True)
class Timing:
    """When a schedule ticks: a cron expression or a fixed interval."""

    cron: str | None = None
    interval_seconds: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidSchedule("give either a cron expression or an interval")

    @classmethod
    def of(cls, cron: str | None, interval_seconds: float | None) -> Timing:
        if (cron is None) == (interval_seconds is None):
            raise InvalidSchedule("give either a cron expression or an interval")
        if cron is not None:
            return cls(cron=check_cron(cron))
        assert interval_seconds is not None
        return cls(interval_seconds=check_interval(interval_seconds))

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first tick strictly after ``moment``."""
        if self.interval_seconds is not None:
            step = self.interval_seconds
            index = math.floor(moment.timestamp() / step) + 1
            return datetime.datetime.fromtimestamp(index * step, UTC)
        assert self.cron is not None
        return croniter(self.cron, moment.astimezone(UTC)).get_next(datetime.datetime)  # type: ignore[no-any-return]

    def at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """The last tick at or before ``moment``."""
        if self.interval_seconds is not None:
            step = self.interval_seconds
            index = math.floor(moment.timestamp() / step)
            return datetime.datetime.fromtimestamp(index * step, UTC)
        assert self.cron is not None
        # croniter's get_prev is strictly before its start: nudge past moment.
        start = moment.astimezone(UTC) + datetime.timedelta(microseconds=1)
        return croniter(self.cron, start).get_prev(datetime.datetime)  # type: ignore[no-any-return]

    def ticks(
        self, start: datetime.datetime, end: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        """Ticks ``t`` with ``start <= t <= end``, oldest first."""
        tick = self.next_after(start - datetime.timedelta(microseconds=1))
        while tick <= end:
            yield tick
            tick = self.next_after(tick)

    def expected_interval(self) -> datetime.timedelta:
        """The longest normal gap between two ticks (e.g. 3 days for weekdays)."""
        if self.interval_seconds is not None:
            return datetime.timedelta(seconds=self.interval_seconds)
        # A fixed reference, so the same cron always gets the same value.
        start = datetime.datetime(2024, 1, 1, tzinfo=UTC)
        previous = self.next_after(start)
        longest = datetime.timedelta(0)
        for _ in range(_SAMPLE_TICKS):
            tick = self.next_after(previous)
            longest = max(longest, tick - previous)
            previous = tick
            if previous - start > _SAMPLE_SPAN:
                break
        return longest

    def describe(self) -> str:
        if self.cron is not None:
            return self.cron
        return f"every {self.interval_seconds} s"


def interval_as_cron(seconds: int) -> str:
    """The cron expression ticking every ``seconds``, aligned like intervals.

    Only intervals that divide a minute, an hour or a day evenly have one;
    others raise ``InvalidSchedule`` (use a runtime interval schedule).
    """
    seconds = check_interval(seconds)
    if seconds < 60 and 60 % seconds == 0:
        return "* * * * * *" if seconds == 1 else f"* * * * * */{seconds}"
    if seconds % 60 == 0:
        minutes = seconds // 60
        if minutes < 60 and 60 % minutes == 0:
            return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
        if minutes % 60 == 0:
            hours = minutes // 60
            if hours < 24 and 24 % hours == 0:
                return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
            if hours == 24:
                return "0 0 * * *"
    raise InvalidSchedule(
        f"an interval of {seconds} s does not divide a minute, an hour or a day: "
        "use a runtime schedule (pgjobs.schedules.add_schedule(interval_seconds=...))"
    )
