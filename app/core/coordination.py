"""Coordination between worker processes through the database: shared rate budgets, leases.

Workers may run as several processes on several machines; the database is the one thing they
share, so the things that must hold for all of them together live in rows:

- `SharedRateBudget`: a token bucket row (`rate_buckets`) that hands out request slots `1/rate`
  apart. Each process reserves a few slots at a time in one short transaction, so all
  processes together stay under the configured rate (plus the bucket's small burst).
- `take_lease`: a named lease row (`leases`) with an expiry: "one of you runs this now".

Times are the database's clock (seconds since the epoch), so machines with skewed clocks still
agree. Each transaction is a row lock (PostgreSQL `FOR UPDATE`) or SQLite's single writer
(`BEGIN IMMEDIATE`), held for a few statements.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Float, String, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Database

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class RateBucket(Base):
    __tablename__ = "rate_buckets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # When the next request slot is free (database epoch seconds): a GCRA token bucket.
    next_at: Mapped[float] = mapped_column(Float)


class Lease(Base):
    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)  # database epoch seconds


def db_epoch(database: Database) -> Any:
    """The database's current time in (fractional) seconds since the epoch, as SQL."""
    if database.is_sqlite:
        # julianday('now') has millisecond precision; 2440587.5 is the Unix epoch's Julian day.
        return (func.julianday("now") - literal(2440587.5)) * literal(86400.0)
    return func.extract("epoch", func.clock_timestamp())


async def _ensure_row(session: AsyncSession, database: Database, model: Any, values: dict[str, Any]) -> None:
    insert = sqlite_insert if database.is_sqlite else pg_insert
    await session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=["name"]))


class SharedRateBudget:
    """`rate` requests per second for every process that uses the bucket `name`, together.

    The row holds the time of the next free request slot (a GCRA token bucket): slots are
    handed out `1/rate` apart, at most `burst` of them at once after a quiet spell. A process
    reserves a few slots in one short transaction and spends each at its time, reserving the
    next few in the background while it spends these, so the database is never on a request's
    path. Slots not used soon after their time lapse: nobody can save them up for a burst.
    """

    LAPSE_SECONDS = 0.25

    def __init__(
        self,
        database: Database,
        rate: float,
        *,
        burst: float | None = None,
        name: str = "stripe",
        session: SessionFactory | None = None,
    ) -> None:
        self.database = database
        self.rate = max(rate, 0.1)
        self.capacity = max(1.0, burst if burst is not None else self.rate / 10)
        # A few slots per transaction (about 50 ms' worth): few transactions, fair interleaving.
        self.batch = max(1, math.ceil(self.rate / 20))
        self.name = name
        self._session = session or database.session
        self._slots: collections.deque[float] = collections.deque()  # local monotonic times
        self._lock = asyncio.Lock()
        self._refill: asyncio.Task[None] | None = None
        self._row_ready = False
        self.transactions = 0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._slots and self._slots[0] < now - self.LAPSE_SECONDS:
                    self._slots.popleft()
                if self._slots:
                    at = self._slots.popleft()
                    if len(self._slots) < self.batch and (self._refill is None or self._refill.done()):
                        self._refill = self._start_refill()
                    if at > now:
                        await asyncio.sleep(at - now)
                    return
                if self._refill is None or self._refill.done():
                    self._refill = self._start_refill()
                await self._refill

    def _start_refill(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._reserve(self.batch), name=f"rate-budget-{self.name}")
        # A failed prefetch nobody awaited is retried by the next acquire; do not log it twice.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _reserve(self, count: int) -> None:
        """Reserve the next `count` slots of the shared row for this process."""
        async with self._session() as session:
            self.transactions += 1
            if not self._row_ready:
                await _ensure_row(session, self.database, RateBucket, {"name": self.name, "next_at": 0.0})
                self._row_ready = True
            query = select(RateBucket, db_epoch(self.database).label("now")).where(
                RateBucket.name == self.name
            )
            if not self.database.is_sqlite:
                query = query.with_for_update(of=RateBucket)
            row, now = (await session.execute(query)).one()
            now = float(now)
            # After a quiet spell up to `capacity` slots are due at once (the burst), no more.
            start = max(row.next_at, now - self.capacity / self.rate)
            row.next_at = start + count / self.rate
        local = time.monotonic()  # the database's "now" maps to (at the latest) this moment
        self._slots.extend(local + start + i / self.rate - now for i in range(count))


async def take_lease(
    database: Database,
    name: str,
    holder: str,
    seconds: float,
    *,
    session: SessionFactory | None = None,
) -> bool:
    """Take (or extend) the lease `name` for `seconds` if it is free, expired or ours already."""
    async with (session or database.session)() as db:
        now_sql = db_epoch(database)
        await _ensure_row(db, database, Lease, {"name": name, "holder": "", "expires_at": 0.0})
        query = select(Lease, now_sql.label("now")).where(Lease.name == name)
        if not database.is_sqlite:
            query = query.with_for_update(of=Lease)
        row, now = (await db.execute(query)).one()
        if row.holder != holder and row.expires_at > float(now):
            return False
        row.holder = holder
        row.expires_at = float(now) + seconds
        return True


async def release_lease(
    database: Database,
    name: str,
    holder: str,
    *,
    keep_seconds: float = 0.0,
    session: SessionFactory | None = None,
) -> None:
    """Give the lease up (or keep it `keep_seconds` more from now, still ours) if we hold it."""
    async with (session or database.session)() as db:
        query = select(Lease, db_epoch(database).label("now")).where(Lease.name == name)
        if not database.is_sqlite:
            query = query.with_for_update(of=Lease)
        found = (await db.execute(query)).one_or_none()
        if found is None or found[0].holder != holder:
            return
        found[0].expires_at = float(found[1]) + keep_seconds if keep_seconds else 0.0


@contextlib.asynccontextmanager
async def leased(
    database: Database, name: str, holder: str, seconds: float, *, rest_seconds: float = 0.0
) -> AsyncIterator[bool]:
    """`async with leased(...) as mine:` runs the body with `mine` True for one holder at a time.

    Afterwards the lease stays taken `rest_seconds` more (a periodic job's interval), so the
    other processes skip this round instead of running it again right away.
    """
    mine = await take_lease(database, name, holder, seconds)
    try:
        yield mine
    finally:
        if mine:
            await release_lease(database, name, holder, keep_seconds=rest_seconds)
