"""Dead letters: failed jobs land in a SQL table, raise an alert, and are replayed.

A bug (a missing invoice template) makes every invoice job fail for good. Each
failure writes a row in ``pgjobs.dead_letters`` and calls the App's
``on_dead_letter`` hook (page someone, post to chat...). Once the fix is
deployed, the letters are replayed as new jobs; replaying again does nothing.

    python -m examples.dead_letters_alert_replay
    psql -c 'SELECT id, task_name, error_type, replay_job_id FROM pgjobs.dead_letters'
    pgjobs dlq list; pgjobs dlq replay --task examples.send_invoice
"""

from __future__ import annotations

import logging

from pgjobs import App, DeadLetter, FailNow, database, dead_letters, get_job, schema

alerts: list[str] = []


def alert(letter: DeadLetter) -> None:
    """Your pager/chat call goes here; it runs in the worker that failed the job."""
    alerts.append(
        f"ALERT {letter.task_name} job {letter.job_id}: {letter.error_message}"
    )
    print(alerts[-1])


app = App(on_dead_letter=alert)
TEMPLATES = {"reminder"}  # "invoice" is missing: the bug


@app.task(name="examples.send_invoice", queue="billing")
def send_invoice(invoice_id: int) -> None:
    if "invoice" not in TEMPLATES:
        raise FailNow(f"template 'invoice' missing, invoice {invoice_id} not sent")


def run_worker() -> None:
    app.run_worker(queues=["billing"], wait=False, install_signal_handlers=False)


def main() -> dict[str, int]:
    schema.upgrade(app.settings)
    with database.connect(app.settings) as conn:
        app.enqueue_many(
            conn, send_invoice, [{"invoice_id": n} for n in (101, 102, 103)]
        )
        conn.commit()
    run_worker()
    pending = dead_letters.list_dead_letters(
        app.settings, task=send_invoice.name, replayed=False
    )
    print(f"{len(pending)} dead letters, {len(alerts)} alerts")

    TEMPLATES.add("invoice")  # the fix is deployed
    replayed = dead_letters.replay_dead_letters(app.settings, task=send_invoice.name)
    again = dead_letters.replay_dead_letters(app.settings, task=send_invoice.name)
    print(
        f"replayed {len(replayed)} letters as jobs {[r.job_id for r in replayed]}; "
        f"replaying again enqueued {len(again)}"
    )
    run_worker()
    succeeded = sum(
        get_job(app.settings, r.job_id).status == "succeeded" for r in replayed
    )
    print(f"{succeeded} replayed invoices sent")
    return {
        "letters": len(pending),
        "alerts": len(alerts),
        "replayed": len(replayed),
        "replayed_again": len(again),
        "succeeded": succeeded,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("procrastinate").setLevel(logging.CRITICAL)  # tracebacks
    main()
