"""Engine, sessions and the declarative base shared by every domain package.

One request = one session = one transaction: the session is committed after the handler has
produced its response and before a byte of it is sent, so a failed commit still becomes an
error response and nothing is half-written. Code outside requests (CLI, workers) uses
`Database.session()` the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Integer, MetaData, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.fastread import FastReader

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for large tables.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# none_as_null: a Python None is SQL NULL, not the JSON text "null", so IS NULL checks work.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: DateTimeUTC(timezone=True),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class TimestampedBase(Base):
    """Surrogate integer key plus created/updated timestamps; public ids live in their own column."""

    __abstract__ = True
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event (below) start transactions instead of the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock up front. A deferred transaction that reads and then writes cannot
    # wait for the lock (SQLite answers "database is locked" at once); this one queues behind
    # busy_timeout instead. The hot reads do not use sessions, so this costs them nothing.
    # Read sessions (`Database.session(read=True)`) begin deferred: they run side by side.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_OPTION) else "BEGIN IMMEDIATE")


# The execution option of read sessions (see `Database.session`).
READ_OPTION = "tollgate_read"


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url,
            connect_args={"timeout": 10},
            json_serializer=_json_dumps,
            json_deserializer=msgspec.json.decode,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=msgspec.json.decode,
    )


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class Database:
    """The engine and session factory of one Tollgate instance."""

    def __init__(self, database_url: str, *, pool_size: int = 10) -> None:
        self.url = database_url
        self.engine = create_engine(database_url, pool_size=pool_size)
        self.session_maker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        # Same pool; on SQLite, transactions begin deferred instead of taking the write lock.
        self.read_session_maker = async_sessionmaker(
            self.engine.execution_options(**{READ_OPTION: True}), expire_on_commit=False, autoflush=True
        )
        self.fast = FastReader(database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def session(self, *, read: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without an exception.

        `read=True`: for requests that (almost always) only read, e.g. the widgets' pages. On
        SQLite it does not queue for the single write lock, so such requests run side by side.
        If one must write after all (a time-driven transition caught up on), SQLite may refuse
        with "database is locked": the caller retries with a plain session.
        """
        async with (self.read_session_maker if read else self.session_maker)() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.fast.close()
        await self.engine.dispose()


async def pairs(session: AsyncSession, statement: Any) -> dict[Any, Any]:
    """{first column: second column} of a two-column select."""
    result = await session.execute(statement)
    return dict(result.all())  # type: ignore[arg-type]  # rows of two columns are (key, value) pairs


async def provide_read_session(database: Database) -> AsyncGenerator[AsyncSession, None]:
    """Litestar dependency: a read session (see `Database.session`)."""
    async with database.session(read=True) as session:
        yield session


async def provide_db_session(database: Database) -> AsyncGenerator[AsyncSession, None]:
    """Litestar dependency: the request's session, committed once the response is ready."""
    async with database.session() as session:
        yield session
