"""Which database pgjobs talks to, and opening connections to it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pgjobs import embedded
from pgjobs.errors import DatabaseUnavailable
from pgjobs.settings import Settings

_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^:/@?#]*:)(?P<password>[^@/?#]*)@")
_PASSWORD_IN_DSN = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)")


def redact(text: str) -> str:
    """Hide passwords of URLs or key=value conninfo strings inside ``text``."""
    text = _PASSWORD_IN_URL.sub(lambda m: m["head"] + "***@", text)
    return _PASSWORD_IN_DSN.sub(lambda m: m["head"] + "***", text)


def conninfo(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started on demand)."""
    if settings.database_url:
        return settings.database_url
    return embedded.start(settings.embedded_dir)


def describe(settings: Settings) -> str:
    """A one-line, password-free description of the target database."""
    if settings.database_url:
        return redact(settings.database_url)
    return f"embedded PostgreSQL in {settings.embedded_dir}"


def connect(target: Settings | str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection; an unreachable database raises ``DatabaseUnavailable``."""
    info = conninfo(target) if isinstance(target, Settings) else target
    try:
        return psycopg.connect(info, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(exc, info) from None
    except psycopg.ProgrammingError as exc:  # malformed conninfo
        raise DatabaseUnavailable(f"invalid database URL: {redact(str(exc))}") from None


def unavailable(exc: BaseException, info: str) -> DatabaseUnavailable:
    first_line = redact(str(exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    return DatabaseUnavailable(
        f"cannot connect to the database {redact(info)}: {first_line}"
    )


@contextmanager
def connection(
    target: Settings | str | psycopg.Connection[Any],
) -> Iterator[psycopg.Connection[Any]]:
    """A connection for an admin function.

    Given a psycopg connection, use it as is: the statements join the caller's
    transaction and the caller commits. Given settings or a URL, open an
    autocommit connection for the call and close it afterwards.
    """
    if isinstance(target, psycopg.Connection):
        yield target
        return
    with connect(target, autocommit=True) as conn:
        yield conn
