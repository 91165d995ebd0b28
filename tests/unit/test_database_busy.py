"""A transaction that waited too long for the database's lock is a 503 to retry, not a 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.core.problems import handle_database_error


def _error_from(path: Path, statement: str) -> DBAPIError:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the statement succeeded")


def _body(response: Any) -> dict[str, Any]:
    return msgspec.json.decode(msgspec.json.encode(response.content))


def test_a_locked_database_answers_503_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        exc = _error_from(path, "INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(exc.orig)
    response = handle_database_error(None, exc)  # type: ignore[arg-type]
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert _body(response)["code"] == "database_busy"


def test_other_database_errors_stay_internal(tmp_path: Path) -> None:
    exc = _error_from(tmp_path / "t.sqlite", "SELECT * FROM missing_table")
    response = handle_database_error(None, exc)  # type: ignore[arg-type]
    assert response.status_code == 500 and _body(response)["code"] == "internal_error"
