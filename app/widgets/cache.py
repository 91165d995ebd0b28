"""A tiny per-process TTL cache for the widgets' read models.

Widgets are rendered far more often than the catalog changes, and every database round trip
costs a thread hop with aiosqlite; a few seconds of staleness is the accepted price (a price
change reaches open paywalls within CATALOG_SECONDS). Keys include the database URL, so
several instances in one process (the test suite) never share entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

K = TypeVar("K")
V = TypeVar("V")

CATALOG_SECONDS = 10.0
ENVIRONMENT_SECONDS = 15.0


class TTLCache(Generic[K, V]):
    def __init__(self, seconds: float, max_entries: int = 512) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            self._items.pop(key, None)
            return None
        return item[0]

    def put(self, key: K, value: V) -> V:
        self._items[key] = (value, time.monotonic() + self.seconds)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()


def database_key(session: AsyncSession) -> str:
    bind = session.bind
    return str(getattr(bind, "url", id(bind)))
