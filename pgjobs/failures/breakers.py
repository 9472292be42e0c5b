"""Circuit breakers shared by every worker, with their state in Postgres.

A breaker protects a dependency (an API, a mail server). After
``failure_threshold`` consecutive failures it opens for ``recovery_window``
seconds; jobs that need it are then put back in the queue for when it may
close (no attempt counted, no dead letter). After the window, up to
``success_threshold`` trial calls go through (half-open): that many successes
close it, one failure opens it again.

Use it as a task option (``@app.task(breaker="payments-api")``) or around a
call inside a task (``with app.breaker("crm").guard(): ...``, or ``async
with`` in async tasks). The state is the row ``pgjobs.breakers.name``; every
transition is one SQL function call under the row lock, so all processes see
the same breaker.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar

from procrastinate import connector as procrastinate_connector
from procrastinate import job_context
from procrastinate import worker as procrastinate_worker

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import BreakerNotFound, InvalidBreaker
from pgjobs.worker import middleware

logger = logging.getLogger("pgjobs.breakers")

F = TypeVar("F", bound=Callable[..., Any])


class BreakerOpen(Exception):
    """The breaker refused the call; the job is re-scheduled for ``retry_at``."""

    def __init__(self, name: str, state: str, retry_at: datetime.datetime) -> None:
        super().__init__(
            f"circuit breaker {name!r} is {state}: retry at {retry_at.isoformat()}"
        )
        self.name = name
        self.state = state
        self.retry_at = retry_at


@dataclass(frozen=True)
class Breaker:
    """A breaker's configuration (its state lives in ``pgjobs.breakers``).

    ``trip_on``: exception types that count as failures of the protected
    call (default any ``Exception``); ``ignore``: types that never count
    (e.g. your own validation errors, which say nothing about the remote).
    """

    name: str
    failure_threshold: int = 5
    recovery_window: float = 30.0
    success_threshold: int = 1
    trip_on: tuple[type[BaseException], ...] = (Exception,)
    ignore: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidBreaker("a breaker needs a name")
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise InvalidBreaker("breaker thresholds must be at least 1")
        if self.recovery_window <= 0:
            raise InvalidBreaker("breaker recovery_window must be > 0 seconds")
        object.__setattr__(self, "trip_on", tuple(self.trip_on))
        object.__setattr__(self, "ignore", tuple(self.ignore))

    def counts(self, exception: BaseException) -> bool:
        """Whether ``exception`` is a failure of the protected call."""
        if isinstance(exception, BreakerOpen):
            return False
        if self.ignore and isinstance(exception, self.ignore):
            return False
        return isinstance(exception, self.trip_on)

    def _params(self) -> dict[str, Any]:
        return {
            "breaker": self.name,
            "failure_threshold": self.failure_threshold,
            "recovery_window": datetime.timedelta(seconds=self.recovery_window),
            "success_threshold": self.success_threshold,
        }

    # -- one round trip each, through the app's connector ------------------

    def _refusal(self, row: dict[str, Any]) -> BreakerOpen | None:
        if row["allowed"]:
            return None
        return BreakerOpen(self.name, row["state"], row["retry_at"])

    def _after_record(self, row: dict[str, Any]) -> None:
        if row["changed"]:
            logger.warning(
                f"circuit breaker {self.name!r} is now {row['state']}",
                extra={
                    "action": "breaker_state",
                    "breaker": self.name,
                    "state": row["state"],
                },
            )

    async def acquire_async(
        self, connector: procrastinate_connector.BaseConnector
    ) -> None:
        """Raise ``BreakerOpen`` unless a call may go ahead now."""
        row = await connector.execute_query_one_async(
            query=queries.query("breakers_acquire"), **self._params()
        )
        refusal = self._refusal(row)
        if refusal is not None:
            raise refusal

    def acquire(self, connector: procrastinate_connector.BaseConnector) -> None:
        row = connector.get_sync_connector().execute_query_one(
            query=queries.query("breakers_acquire"), **self._params()
        )
        refusal = self._refusal(row)
        if refusal is not None:
            raise refusal

    async def record_async(
        self,
        connector: procrastinate_connector.BaseConnector,
        error: BaseException | None,
    ) -> None:
        """Report the outcome of a call (``error`` None: it succeeded)."""
        row = await connector.execute_query_one_async(
            query=queries.query("breakers_record"),
            success=error is None,
            error=None if error is None else f"{type(error).__qualname__}: {error}",
            **self._params(),
        )
        self._after_record(row)

    def record(
        self,
        connector: procrastinate_connector.BaseConnector,
        error: BaseException | None,
    ) -> None:
        row = connector.get_sync_connector().execute_query_one(
            query=queries.query("breakers_record"),
            success=error is None,
            error=None if error is None else f"{type(error).__qualname__}: {error}",
            **self._params(),
        )
        self._after_record(row)


class Guard:
    """``with``/``async with``/decorator around one protected call.

    Raises ``BreakerOpen`` before the call when the breaker refuses it; a
    task that lets it propagate is re-scheduled, not failed.
    """

    def __init__(
        self, breaker: Breaker, connector: procrastinate_connector.BaseConnector
    ):
        self.breaker = breaker
        self.connector = connector

    def __enter__(self) -> Guard:
        self.breaker.acquire(self.connector)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.breaker.record(self.connector, None)
        elif self.breaker.counts(exc):
            self.breaker.record(self.connector, exc)

    async def __aenter__(self) -> Guard:
        await self.breaker.acquire_async(self.connector)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.breaker.record_async(self.connector, None)
        elif self.breaker.counts(exc):
            await self.breaker.record_async(self.connector, exc)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class BreakerHost(Protocol):
    """What breakers need of their App: the database, the tasks (their
    ``breaker=`` option) and the App's breaker configurations by name."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    @property
    def breakers(self) -> dict[str, Breaker]: ...


class BoundBreaker:
    """A breaker of one App: ``app.breaker("crm").guard()``."""

    def __init__(self, app: BreakerHost, breaker: Breaker):
        self.app = app
        self.breaker = breaker

    @property
    def name(self) -> str:
        return self.breaker.name

    def guard(self) -> Guard:
        return Guard(self.breaker, self.app.connector)


def resolve(registry: Mapping[str, Breaker], spec: str | Breaker) -> Breaker:
    """The breaker a task option names: registered config, or defaults."""
    if isinstance(spec, Breaker):
        return spec
    return registry.get(spec) or Breaker(spec)


def register(
    registry: dict[str, Breaker], spec: str | Breaker, **config: Any
) -> Breaker:
    """One configuration per breaker name in ``registry`` (an App's)."""
    if isinstance(spec, Breaker):
        if config:
            raise InvalidBreaker("pass either a Breaker or options, not both")
        registry[spec.name] = spec
        return spec
    if config or spec not in registry:
        registry[spec] = Breaker(spec, **config)
    return registry[spec]


def breaker_middleware(host: BreakerHost) -> Callable[..., Any]:
    """The worker middleware of ``host``'s tasks declared with ``breaker=``."""

    @middleware.for_tasks(lambda task: getattr(task, "breaker", None) is not None)
    async def breaker_guard(
        call_next: Any,
        context: job_context.JobContext,
        worker: procrastinate_worker.Worker,
    ) -> Any:
        task = host.tasks.get(context.job.task_name)
        spec = getattr(task, "breaker", None)
        if spec is None:
            return await call_next()
        breaker = resolve(host.breakers, spec)
        connector = host.connector
        await breaker.acquire_async(connector)
        try:
            result = await call_next()
        except BaseException as exc:
            if breaker.counts(exc):
                await breaker.record_async(connector, exc)
            raise
        await breaker.record_async(connector, None)
        return result

    return breaker_guard


# -- admin API (SQL view of the state, reset) -------------------------------


def _state(row: dict[str, Any]) -> BreakerState:
    return BreakerState(
        **{**row, "recovery_window": row["recovery_window"].total_seconds()}
    )


@dataclass(frozen=True)
class BreakerState:
    """One row of ``pgjobs.breakers``."""

    name: str
    state: str
    failure_threshold: int
    #: Seconds.
    recovery_window: float
    success_threshold: int
    failure_count: int
    success_count: int
    trial_count: int
    opened_at: datetime.datetime | None
    reopens_at: datetime.datetime | None
    last_failure_at: datetime.datetime | None
    last_error: str | None
    updated_at: datetime.datetime


def list_breakers(
    target: Target,
) -> list[BreakerState]:
    with connections.connection(target) as conn:
        return [_state(row) for row in queries.fetch_all(conn, "breakers_list")]


def get_breaker(target: Target, name: str) -> BreakerState:
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "breakers_get", breaker=name)
    if row is None:
        raise BreakerNotFound(f"no circuit breaker named {name!r}")
    return _state(row)


def reset_breaker(target: Target, name: str) -> BreakerState:
    """Close a breaker now (counts cleared), whatever its state."""
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "breakers_reset", breaker=name)
    if row is None:
        raise BreakerNotFound(f"no circuit breaker named {name!r}")
    return _state(row)
