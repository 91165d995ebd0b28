"""The sandbox's state: Stripe objects per account in SQLite, with a decoded-on-read memory index.

Every object lives in one table keyed by id, tagged with its account and type. Reads are served
from memory (objects are kept encoded, so callers always get their own copy); writes are
collected during a request and committed in one SQLite transaction, or undone on error.
Objects that belong to a customer (subscriptions, invoices, invoice items, ...) are also indexed
by that customer, so per-customer work (a subscription's first invoice collecting the pending
invoice items, `GET /v1/subscriptions?customer=`) does not scan the whole account.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_account_type ON objects (account, type, seq);
"""


# Types indexed by their `customer` field.
CUSTOMER_INDEXED = frozenset(
    {"subscription", "invoice", "invoiceitem", "payment_method", "tax_id", "checkout.session", "setup_intent"}
)


@dataclass(slots=True)
class _Record:
    account: str
    type: str
    seq: int
    data: bytes
    customer: str | None = None


def _customer_of(kind: str, obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer") if kind in CUSTOMER_INDEXED else None
    return customer if isinstance(customer, str) else None


class Store:
    def __init__(self, path: str | Path | None = None) -> None:
        target = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        # (account, type) -> ids in creation order; dicts keep insertion order and delete in O(1).
        self._index: dict[tuple[str, str], dict[str, None]] = {}
        # (account, type, customer id) -> ids of that customer's objects of that type.
        self._by_customer: dict[tuple[str, str, str], dict[str, None]] = {}
        self._undo: dict[str, _Record | None] = {}
        # Decoded objects for read-only scans (list filters); never handed out for mutation.
        self._peek_cache: dict[str, dict[str, Any]] = {}
        self._seq = 0
        for object_id, account, kind, seq, data in self._conn.execute(
            "SELECT id, account, type, seq, data FROM objects ORDER BY seq"
        ):
            customer = _customer_of(kind, _decode(data)) if kind in CUSTOMER_INDEXED else None
            record = _Record(account, kind, seq, data, customer)
            self._records[object_id] = record
            self._index.setdefault((account, kind), {})[object_id] = None
            self._link(object_id, record)
            self._seq = max(self._seq, seq)

    # -- reads --------------------------------------------------------------------------------
    def get(self, account: str, object_id: str, kind: str | None = None) -> dict[str, Any] | None:
        record = self._records.get(object_id)
        if record is None or record.account != account or (kind is not None and record.type != kind):
            return None
        return _decode(record.data)

    def locate(self, object_id: str) -> tuple[str, str] | None:
        """(account, type) of an object, whichever account holds it (for hosted pages)."""
        record = self._records.get(object_id)
        return (record.account, record.type) if record is not None else None

    def kind_of(self, account: str, object_id: str) -> str | None:
        record = self._records.get(object_id)
        return record.type if record is not None and record.account == account else None

    def list(self, account: str, kind: str) -> list[dict[str, Any]]:
        """All objects of a type, newest first."""
        ids = self._index.get((account, kind), {})
        return [_decode(self._records[object_id].data) for object_id in reversed(ids)]

    def peek_ids(self, account: str, kind: str) -> list[str]:
        """Ids of a type, newest first."""
        return list(reversed(self._index.get((account, kind), {})))

    def peek(self, object_id: str) -> dict[str, Any]:
        """A shared decoded object for read-only filtering: callers must not change it."""
        cached = self._peek_cache.get(object_id)
        if cached is None:
            cached = _decode(self._records[object_id].data)
            self._peek_cache[object_id] = cached
        return cached

    def customer_ids(self, account: str, kind: str, customer: str) -> list[str]:
        """Ids of one customer's objects of a (customer-indexed) type, newest first."""
        ids = self._by_customer.get((account, kind, customer), {})
        return sorted(ids, key=lambda i: self._records[i].seq, reverse=True)

    def count(self, account: str, kind: str) -> int:
        return len(self._index.get((account, kind), {}))

    def accounts(self) -> set[str]:
        return {account for account, _ in self._index}

    # -- writes -------------------------------------------------------------------------------
    def put(
        self, account: str, kind: str, obj: dict[str, Any], object_id: str | None = None
    ) -> dict[str, Any]:
        key: str = object_id or obj["id"]
        existing = self._records.get(key)
        self._undo.setdefault(key, existing)
        if existing is None:
            self._seq += 1
            seq = self._seq
            self._index.setdefault((account, kind), {})[key] = None
        else:
            seq = existing.seq
            self._unlink(key, existing)
        record = _Record(account, kind, seq, _encode(obj), _customer_of(kind, obj))
        self._records[key] = record
        self._link(key, record)
        self._peek_cache.pop(key, None)
        return obj

    def _link(self, object_id: str, record: _Record) -> None:
        if record.customer is not None:
            self._by_customer.setdefault((record.account, record.type, record.customer), {})[object_id] = None

    def _unlink(self, object_id: str, record: _Record) -> None:
        if record.customer is not None:
            ids = self._by_customer.get((record.account, record.type, record.customer))
            if ids is not None:
                ids.pop(object_id, None)
                if not ids:
                    del self._by_customer[(record.account, record.type, record.customer)]

    def delete(self, account: str, object_id: str) -> None:
        existing = self._records.get(object_id)
        if existing is None or existing.account != account:
            return
        self._undo.setdefault(object_id, existing)
        del self._records[object_id]
        self._unlink(object_id, existing)
        self._peek_cache.pop(object_id, None)
        self._index.get((account, existing.type), {}).pop(object_id, None)

    def commit(self) -> None:
        if not self._undo:
            return
        changed = list(self._undo)
        self._undo = {}
        rows = []
        removed = []
        for object_id in changed:
            record = self._records.get(object_id)
            if record is None:
                removed.append((object_id,))
            else:
                rows.append((object_id, record.account, record.type, record.seq, record.data))
        self._conn.execute("BEGIN")
        try:
            if removed:
                self._conn.executemany("DELETE FROM objects WHERE id = ?", removed)
            if rows:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO objects (id, account, type, seq, data) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def rollback(self) -> None:
        for object_id, previous in self._undo.items():
            self._peek_cache.pop(object_id, None)
            current = self._records.pop(object_id, None)
            if current is not None:
                self._index.get((current.account, current.type), {}).pop(object_id, None)
                self._unlink(object_id, current)
            if previous is not None:
                self._records[object_id] = previous
                self._link(object_id, previous)
                ids = self._index.setdefault((previous.account, previous.type), {})
                ids[object_id] = None
                # Re-sort only this type's ids so creation order survives the undo.
                if len(ids) > 1:
                    ordered = sorted(ids, key=lambda i: self._records[i].seq)
                    self._index[(previous.account, previous.type)] = dict.fromkeys(ordered)
        self._undo = {}

    def reset(self) -> None:
        with self.lock:
            self._records.clear()
            self._peek_cache.clear()
            self._index.clear()
            self._by_customer.clear()
            self._undo = {}
            self._conn.execute("DELETE FROM objects")

    def close(self) -> None:
        self._conn.close()
