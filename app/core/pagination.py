"""Cursor pagination done in SQL: newest first, `startingAfter` is the last id of the previous page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidRequest, not_found

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(msgspec.Struct, Generic[T], rename="camel"):
    data: list[T]
    has_more: bool
    next_cursor: str | None = None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", code="invalid_limit", param="limit")
    return limit


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    model: Any,
    *,
    environment_pk: int,
    limit: int,
    starting_after: str | None,
    entity: str,
    key: Any = None,
) -> tuple[Sequence[Any], bool]:
    """Rows of `query` (selecting `model`) after the cursor, plus whether more exist.

    The cursor is the public id of the last row: `model.ref` unless `key` names another column.
    """
    check_limit(limit)
    if starting_after:
        column = model.ref if key is None else key
        cursor_pk = await session.scalar(
            select(model.pk).where(model.environment_pk == environment_pk, column == starting_after)
        )
        if cursor_pk is None:
            raise not_found(entity, starting_after)
        query = query.where(model.pk < cursor_pk)
    rows = (await session.scalars(query.order_by(model.pk.desc()).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit
