"""Retry policies: exponential backoff with jitter, and error classification.

A ``RetryPolicy`` is a procrastinate retry strategy: pass it as a task's
``retry=`` (or as ``App(retry=...)`` for every task without its own). A task
can also steer its own retries by raising ``RetryIn(seconds)`` or
``FailNow(...)``.

Delay before attempt ``n + 1`` after attempt ``n`` failed (``n`` counts from 1)::

    raw(n) = min(max_delay, base_delay * factor ** (n - 1))
    jitter="none":  delay = raw(n)
    jitter="full":  delay is uniform in [0, raw(n)]
    jitter="equal": delay is uniform in [raw(n) / 2, raw(n)]
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, field
from typing import Literal

from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import jobs as procrastinate_jobs
from procrastinate import retry as procrastinate_retry

from pgjobs.errors import InvalidRetryPolicy

Jitter = Literal["full", "equal", "none"]


class RetryIn(Exception):
    """Raised by a task: "retry this job in ``seconds``" (counts as an attempt).

    Honoured whatever ``retry_on``/``give_up_on`` say, but never beyond the
    policy's ``max_attempts``.
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        if seconds < 0:
            raise InvalidRetryPolicy("RetryIn needs a delay >= 0 seconds")
        super().__init__(message or f"retry requested in {seconds:g} s")
        self.seconds = float(seconds)


class FailNow(Exception):
    """Raised by a task: fail this job now, without retrying (dead letter)."""


@dataclass(frozen=True)
class RetryPolicy(procrastinate_retry.BaseRetryStrategy):
    """When and how often a failing job runs again.

    ``max_attempts`` counts every run, the first included (1 = never retry).
    ``retry_on``: only these exception types are retried (default: any
    ``Exception``); ``give_up_on``: these fail at once, even if they match
    ``retry_on``. Delays are in seconds; see the module docstring for the
    formula.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: Jitter = "full"
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidRetryPolicy("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InvalidRetryPolicy("delays must not be negative")
        if self.factor < 1:
            raise InvalidRetryPolicy("factor must be at least 1")
        if self.jitter not in ("full", "equal", "none"):
            raise InvalidRetryPolicy('jitter must be "full", "equal" or "none"')
        # Accept any iterable of exception types, store tuples (isinstance needs them).
        object.__setattr__(self, "retry_on", tuple(self.retry_on))
        object.__setattr__(self, "give_up_on", tuple(self.give_up_on))

    def raw_delay(self, attempt: int) -> float:
        """Delay before the next run after failed attempt ``attempt`` (1-based)."""
        try:
            delay = self.base_delay * self.factor ** (attempt - 1)
        except OverflowError:
            delay = self.max_delay
        return min(self.max_delay, delay)

    def delay_bounds(self, attempt: int) -> tuple[float, float]:
        """The interval the jittered delay after ``attempt`` falls in."""
        raw = self.raw_delay(attempt)
        if self.jitter == "full":
            return 0.0, raw
        if self.jitter == "equal":
            return raw / 2, raw
        return raw, raw

    def delay(self, attempt: int) -> float:
        low, high = self.delay_bounds(attempt)
        return random.uniform(low, high)

    def is_retryable(self, exception: BaseException) -> bool:
        if isinstance(exception, FailNow):
            return False
        if self.give_up_on and isinstance(exception, self.give_up_on):
            return False
        return isinstance(exception, self.retry_on)

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate_jobs.Job
    ) -> procrastinate_retry.RetryDecision | None:
        attempt = job.attempts + 1  # the run that just failed
        if attempt >= self.max_attempts:
            return None
        if isinstance(exception, RetryIn):
            seconds = exception.seconds
        elif self.is_retryable(exception):
            seconds = self.delay(attempt)
        else:
            return None
        return procrastinate_retry.RetryDecision(
            retry_at=datetime.datetime.now(datetime.UTC)
            + datetime.timedelta(seconds=seconds)
        )


#: What ``App.task(retry=...)`` accepts.
RetryValue = RetryPolicy | procrastinate_retry.BaseRetryStrategy | bool | int | None


def decide(
    strategy: procrastinate_retry.BaseRetryStrategy | None,
    exception: BaseException,
    job: procrastinate_jobs.Job,
) -> procrastinate_exceptions.JobRetry | None:
    """The retry procrastinate should do after ``exception``, or None to fail.

    ``FailNow`` always fails; ``RetryIn`` is honoured within the strategy's
    attempt limit (a task without a strategy has one attempt).
    """
    if strategy is None or isinstance(exception, FailNow):
        return None
    if isinstance(exception, RetryIn) and not isinstance(strategy, RetryPolicy):
        # A procrastinate strategy: ask it whether another attempt is allowed,
        # then use the delay the task asked for.
        allowed = strategy.get_retry_decision(exception=exception, job=job)
        if allowed is None:
            return None
        allowed.retry_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=exception.seconds
        )
        return procrastinate_exceptions.JobRetry(allowed)
    return strategy.get_retry_exception(exception=exception, job=job)
