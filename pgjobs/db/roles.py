"""Least-privilege SQL roles created by the monitoring revision (0005).

Three NOLOGIN group roles; make your login roles members of them
(``GRANT pgjobs_monitor TO grafana``):

- ``pgjobs_enqueuer``: enqueue only (``app.enqueue`` / ``task.defer``); may
  not read, change or delete jobs.
- ``pgjobs_worker``: what ``pgjobs worker`` needs on procrastinate's and
  pgjobs' tables; nothing on the application's own tables.
- ``pgjobs_monitor``: SELECT on the monitoring views only (no job arguments,
  no writes): enough for ``pgjobs stats``, ``health`` and ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target

ROLES: dict[str, str] = {
    "pgjobs_enqueuer": "enqueue jobs only",
    "pgjobs_worker": "run workers",
    "pgjobs_monitor": "read the monitoring views",
}


@dataclass(frozen=True)
class RoleInfo:
    name: str
    purpose: str
    #: The role exists in the cluster.
    exists: bool
    #: The role has its privileges in this database (migration 0005 ran here).
    granted: bool
    members: list[str]


def list_roles(target: Target) -> list[RoleInfo]:
    """The three pgjobs group roles and their members."""
    with connections.connection(target) as conn:
        rows = queries.fetch_all(conn, "roles_list", names=list(ROLES))
    return [RoleInfo(purpose=ROLES[row["name"]], **row) for row in rows]
