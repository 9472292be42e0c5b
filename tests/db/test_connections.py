"""A worker starting while the server restarts waits for it (it does not
exit); a server that was never seen restarting fails at once (a wrong host
or port is a misconfiguration, said in one line)."""

from __future__ import annotations

import logging

import pytest

from pgjobs.db import connections
from pgjobs.errors import DatabaseUnavailable

SHUTTING_DOWN = DatabaseUnavailable(
    "cannot connect to the database x: connection failed: FATAL:  the database"
    " system is shutting down"
)
NO_SOCKET = DatabaseUnavailable(
    "cannot connect to the database x: connection failed: No such file or directory"
)


def test_a_restart_seen_is_waited_out_socket_gone_included(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections.time, "sleep", lambda _: None)
    outcomes: list[BaseException | int] = [SHUTTING_DOWN, NO_SOCKET, NO_SOCKET, 42]

    def call() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        assert connections.wait_for_free_slot(call) == 42
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("the database is restarting (")
    assert messages[-1].startswith("the database accepts connections again after")
    assert len(messages) == 2


def test_a_server_never_seen_restarting_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connections.time, "sleep", lambda _: None)
    calls = 0

    def call() -> int:
        nonlocal calls
        calls += 1
        raise NO_SOCKET

    with pytest.raises(DatabaseUnavailable, match="No such file"):
        connections.wait_for_free_slot(call)
    assert calls == 1


def test_a_restart_that_never_ends_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(
        connections.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s)
    )
    monkeypatch.setattr(connections.time, "monotonic", lambda: clock[0])

    def call() -> int:
        raise SHUTTING_DOWN if clock[0] == 0 else NO_SOCKET

    with pytest.raises(DatabaseUnavailable, match="No such file"):
        connections.wait_for_free_slot(call)
    assert clock[0] >= connections.RESTART_WAIT
