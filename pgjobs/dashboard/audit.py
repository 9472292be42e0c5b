"""The dashboard's audit trail: one ``pgjobs.audit_log`` row per action."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgjobs.db import queries


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime.datetime
    actor: str
    action: str
    target: str
    job_ids: list[int]
    detail: dict[str, Any]


def record(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    target: str,
    job_ids: Sequence[int] = (),
    detail: dict[str, Any] | None = None,
) -> int:
    """Write one entry in the caller's transaction; returns its id."""
    return int(
        queries.fetch_value(
            conn,
            "dashboard_audit_insert",
            actor=actor,
            action=action,
            target=target,
            job_ids=list(job_ids),
            detail=Jsonb(detail or {}),
        )
    )


def entries(
    conn: psycopg.Connection[Any], *, before: int | None = None, limit: int = 50
) -> list[AuditEntry]:
    """Newest first, ids below ``before``."""
    rows = queries.fetch_all(conn, "dashboard_audit_list", before=before, limit=limit)
    return [AuditEntry(**row) for row in rows]


def get(conn: psycopg.Connection[Any], entry_id: int) -> AuditEntry | None:
    row = queries.fetch_one(conn, "dashboard_audit_get", id=entry_id)
    return AuditEntry(**row) if row else None
