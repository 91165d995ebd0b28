"""Small helpers over SQLAlchemy results (rows are not tuples in SQLAlchemy 2.1)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def pairs(rows: Iterable[Any]) -> dict[Any, Any]:
    """{first column: second column} of a two-column result."""
    return {row[0]: row[1] for row in rows}
