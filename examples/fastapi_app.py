"""FastAPI + SQLAlchemy AsyncSession: an order and its job in the request's transaction.

    PGJOBS_DATABASE_URL=postgresql://... uvicorn examples.fastapi_app:api

``lifespan(jobs, worker=True)`` opens pgjobs with the app and runs a worker
in the same process (a small deployment); drop ``worker=True`` and run
``pgjobs worker --app examples.fastapi_app.jobs`` processes to scale apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgjobs import App, JobNotFound, database, get_job
from pgjobs.contrib.fastapi import running

jobs = App()


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "fastapi_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    confirmed: Mapped[bool] = mapped_column(default=False)


_engine: AsyncEngine | None = None


def engine() -> AsyncEngine:
    """One async engine on psycopg 3 (any libpq conninfo, sockets included)."""
    global _engine
    if _engine is None:
        conninfo = database.conninfo(jobs.settings)
        _engine = create_async_engine(
            "postgresql+psycopg://",
            async_creator=lambda: psycopg.AsyncConnection.connect(conninfo),
        )
    return _engine


@jobs.task(queue="emails", retry=3)
async def send_confirmation(order_id: int) -> None:
    async with AsyncSession(engine()) as session, session.begin():
        order = await session.get(Order, order_id)
        if order is not None:  # idempotent: a second run changes nothing
            order.confirmed = True


@contextlib.asynccontextmanager
async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
    global _engine
    async with engine().begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with running(jobs, worker=True, queues=["emails"], concurrency=4):
        yield
    await engine().dispose()
    _engine = None


api = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine(), expire_on_commit=False) as db:
        yield db


Session = Annotated[AsyncSession, Depends(session)]


class OrderIn(BaseModel):
    email: str


@api.post("/orders", status_code=201)
async def create_order(body: OrderIn, db: Session) -> dict[str, Any]:
    async with db.begin():  # one transaction: the order and its job
        order = Order(email=body.email)
        db.add(order)
        await db.flush()
        job_id = await jobs.enqueue_async(db, send_confirmation, {"order_id": order.id})
        if "@" not in body.email:  # raised inside begin(): both rolled back
            raise HTTPException(422, f"invalid email {body.email!r}")
    return {"order_id": order.id, "job_id": job_id}


@api.get("/orders/{order_id}")
async def read_order(order_id: int, db: Session) -> dict[str, Any]:
    order = await db.get(Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return {"id": order.id, "email": order.email, "confirmed": order.confirmed}


@api.get("/jobs/{job_id}")
async def read_job(job_id: int) -> dict[str, Any]:
    try:  # pgjobs' admin API is synchronous: off the event loop
        job = await run_in_threadpool(get_job, jobs.settings, job_id)
    except JobNotFound:
        raise HTTPException(404, "no such job") from None
    return {"status": job.status, "attempts": job.attempts, "task": job.task_name}
