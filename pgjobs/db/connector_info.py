"""What pgjobs needs to know about the connector an App was given.

A ``pgjobs.App`` takes any procrastinate connector, as procrastinate's App
does. They differ in two ways that matter to pgjobs' job manager:

- **How job arguments reach the database.** psycopg 3 connectors (pgjobs'
  own, procrastinate's ``PsycopgConnector`` and ``SyncPsycopgConnector``)
  take the JSON pgjobs already encoded, as a psycopg ``Jsonb``; the
  psycopg2 family (``Psycopg2Connector``, ``AiopgConnector``,
  ``SQLAlchemyPsycopg2Connector``) cannot adapt that type and wrap a
  ``dict`` themselves, with their own ``json_dumps``. Either way a
  connector's ``json_dumps`` writes the JSON, as in procrastinate.
- **Whether there is a database at all.** procrastinate's
  ``testing.InMemoryConnector`` answers procrastinate's own queries from
  memory and knows none of pgjobs' SQL. With it, pgjobs validates
  arguments and options as usual and then hands over to procrastinate's
  own job manager and worker code paths (the in-memory queue is
  procrastinate's, not a second implementation in pgjobs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procrastinate import connector as procrastinate_connector
from procrastinate import psycopg_connector, sync_psycopg_connector, testing

JsonDumps = Callable[[Any], str | bytes]

_PSYCOPG3 = (
    psycopg_connector.PsycopgConnector,
    sync_psycopg_connector.SyncPsycopgConnector,
)


def in_memory(connector: procrastinate_connector.BaseConnector) -> bool:
    """procrastinate's testing connector: no SQL, procrastinate's queries only."""
    return isinstance(connector, testing.InMemoryConnector)


def takes_jsonb(connector: procrastinate_connector.BaseConnector) -> bool:
    """Whether ``connector`` sends psycopg 3 ``Jsonb`` values as they are."""
    return isinstance(connector, _PSYCOPG3)


def json_dumps(connector: procrastinate_connector.BaseConnector) -> JsonDumps | None:
    """The ``json_dumps=`` the connector was built with, if any."""
    # psycopg 3 connectors keep it private, the psycopg2 family public.
    dumps = getattr(connector, "_json_dumps", None) or getattr(
        connector, "json_dumps", None
    )
    return dumps if callable(dumps) else None
