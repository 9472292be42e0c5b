"""Django's database connection as a pgjobs enqueue target.

``app.enqueue(django.db.connection, ...)`` runs on the psycopg 3 connection
under Django's: inside ``transaction.atomic()`` the job is part of that
transaction (rolled back with it, visible to workers at its commit); outside,
Django's autocommit commits it at once, like any other statement.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgjobs.errors import InvalidJobOptions


def psycopg_connection_of(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection Django's ``conn`` runs its queries on."""
    vendor = getattr(conn, "vendor", None)
    if vendor != "postgresql":
        raise InvalidJobOptions(
            f"cannot enqueue on Django's {vendor or type(conn).__name__!r} "
            "database: pgjobs needs PostgreSQL (ENGINE django.db.backends.postgresql)"
        )
    conn.ensure_connection()
    raw = conn.connection
    if isinstance(raw, psycopg.Connection):
        return raw
    raise InvalidJobOptions(
        f"Django's database connection is a {type(raw).__module__}."
        f"{type(raw).__name__} (psycopg2): pgjobs enqueues on psycopg 3 "
        "connections only, to share the transaction. Use Django 4.2+ with psycopg 3 "
        "(pip install 'psycopg[binary]' and uninstall psycopg2: Django picks "
        "psycopg 3 when it can import it)."
    )
