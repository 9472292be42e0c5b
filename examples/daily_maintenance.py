"""Daily maintenance: process items one by one, report counts and duration.

A cron task at midnight (``0 0 * * *``) archives documents older than 30
days. Each document is handled in its own transaction: one bad document is
counted as an error and logged, and the others are still archived. The run's
processed/error counts and duration are stored in a report table (and
logged), so a dashboard or ``pgjobs.periodic_health`` can follow it.

    python -m examples.daily_maintenance
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pgjobs import App, database, schema

app = App()
log = logging.getLogger("examples.daily_maintenance")

SETUP = """
CREATE TABLE IF NOT EXISTS examples_documents (
    id bigserial PRIMARY KEY,
    title text,
    updated_at timestamptz NOT NULL,
    archived_at timestamptz
);
CREATE TABLE IF NOT EXISTS examples_maintenance_reports (
    id bigserial PRIMARY KEY,
    run_for timestamptz NOT NULL,
    processed integer NOT NULL,
    errors integer NOT NULL,
    duration_seconds double precision NOT NULL
);
"""


class BadDocument(Exception):
    """A document that cannot be archived (here: it has no title)."""


def archive(conn: Any, document_id: int, title: str | None) -> None:
    if not title:
        raise BadDocument(f"document {document_id} has no title")
    conn.execute(
        "UPDATE examples_documents SET archived_at = now() WHERE id = %s",
        (document_id,),
    )


@app.periodic(cron="0 0 * * *")  # daily at midnight (UTC)
@app.task(name="examples.daily_maintenance", queue="maintenance", timeout=3600)
def daily_maintenance(timestamp: int) -> dict[str, Any]:
    started = time.monotonic()
    processed = errors = 0
    with database.connect(app.settings) as conn:
        # Ids first, then one short transaction per item: pass ids, not blobs.
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM examples_documents WHERE archived_at IS NULL "
                "AND updated_at < now() - interval '30 days' ORDER BY id"
            )
        ]
        conn.commit()
        for document_id in ids:
            try:
                with conn.transaction():
                    row = conn.execute(
                        "SELECT title FROM examples_documents WHERE id = %s FOR UPDATE",
                        (document_id,),
                    ).fetchone()
                    if row is not None:
                        archive(conn, document_id, row[0])
                processed += 1
            except Exception as exc:  # one bad item must not sink the run
                errors += 1
                log.warning(
                    "document %s skipped: %s",
                    document_id,
                    exc,
                    extra={"document_id": document_id},
                )
        duration = time.monotonic() - started
        conn.execute(
            "INSERT INTO examples_maintenance_reports "
            "(run_for, processed, errors, duration_seconds) "
            "VALUES (to_timestamp(%s), %s, %s, %s)",
            (timestamp, processed, errors, duration),
        )
        conn.commit()
    report = {"processed": processed, "errors": errors, "duration": duration}
    log.info(
        "daily maintenance: %s processed, %s errors in %.2fs",
        processed,
        errors,
        duration,
        extra=report,
    )
    return report


def main() -> tuple[int, int]:
    schema.upgrade(app.settings)
    with database.connect(app.settings) as conn:
        conn.execute(SETUP)
        conn.execute(
            "INSERT INTO examples_documents (title, updated_at) VALUES "
            "('Q1 plan', now() - interval '90 days'), "
            "(NULL, now() - interval '60 days'), "  # the bad one
            "('Q2 plan', now() - interval '45 days'), "
            "('This week', now())"
        )
        # Run tonight's job now, as the scheduler would at midnight.
        app.enqueue(conn, daily_maintenance, {"timestamp": int(time.time())})
        conn.commit()

    async def run_once() -> None:
        async with app.open_async():
            await app.run_worker_async(
                queues=["maintenance"], wait=False, install_signal_handlers=False
            )

    asyncio.run(run_once())
    with database.connect(app.settings) as conn:
        row = conn.execute(
            "SELECT processed, errors, duration_seconds "
            "FROM examples_maintenance_reports ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    processed, errors, duration = row
    print(
        f"daily maintenance: {processed} processed, {errors} error(s) in {duration:.2f}s"
    )
    return processed, errors


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    main()
