"""Order confirmation: the order row and its confirmation job commit together.

The application writes orders with SQLAlchemy; ``app.enqueue(session, ...)``
puts the job in the same transaction, so there is never an order without its
confirmation, nor a confirmation for an order that was rolled back.

    python -m examples.order_confirmation            # place orders, run a worker
    pgjobs worker --app examples.order_confirmation.app   # or run workers apart
"""

from __future__ import annotations

import argparse
import logging

import sqlalchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pgjobs import App, database, schema

app = App()
log = logging.getLogger("examples.order_confirmation")


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    total_cents: Mapped[int]
    confirmation_sent: Mapped[bool] = mapped_column(default=False)


def engine() -> sqlalchemy.Engine:
    return schema.engine_for(database.conninfo(app.settings))


@app.task(queue="emails", retry=3)
def send_order_confirmation(order_id: int) -> None:
    """Pass the id, not the order: the job reads fresh data and stays small."""
    with Session(engine()) as session:
        order = session.get(Order, order_id)
        if order is None:  # deleted since: nothing to confirm
            return
        if order.confirmation_sent:  # idempotent: a retry never sends twice
            return
        log.info("emailing %s about order %s", order.email, order.id)
        order.confirmation_sent = True
        session.commit()


def place_order(session: Session, email: str, total_cents: int) -> Order:
    order = Order(email=email, total_cents=total_cents)
    session.add(order)
    session.flush()  # assigns order.id inside the transaction
    app.enqueue(session, send_order_confirmation, {"order_id": order.id})
    return order


def main(orders: int, run_worker: bool) -> dict[str, int]:
    schema.upgrade(app.settings)
    Base.metadata.create_all(engine())
    with Session(engine()) as session:
        for number in range(orders):
            place_order(session, f"customer{number}@example.com", 1000 + number)
        session.commit()
        place_order(session, "never@example.com", 1)
        session.rollback()  # the order and its job vanish together
    if run_worker:
        app.run_worker(queues=["emails"], wait=False, install_signal_handlers=False)
    with Session(engine()) as session:
        sent = session.scalar(
            sqlalchemy.select(sqlalchemy.func.count()).where(Order.confirmation_sent)
        )
        total = session.scalar(sqlalchemy.select(sqlalchemy.func.count(Order.id)))
    summary = {"orders": int(total or 0), "confirmed": int(sent or 0)}
    print(f"orders: {summary['orders']}, confirmations sent: {summary['confirmed']}")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    main(args.orders, run_worker=not args.no_worker)
