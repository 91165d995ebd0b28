"""The hot path: "may customer C use feature F?" answered from one indexed read.

The customer's materialised entitlements and the feature's usage counter come back in a
single statement through the lean reader (app.fastread). Anything unusual — no snapshot,
an expired one, a feature the customer is not entitled to, an unknown customer — falls back
to the full check in app.subscriptions.entitlements, which also refreshes the snapshot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from app.catalog.models import FeatureType
from app.fastread import FastReader
from app.subscriptions.entitlements import SNAPSHOT_VERSION, answer, current_window, usage_in_window
from app.subscriptions.schemas import EntitlementCheck

CHECK_SQL = """
SELECT c.entitlements_snapshot, c.snapshot_valid_until, u.value, u.window_start
FROM customers c
LEFT JOIN features f ON f.environment_pk = c.environment_pk AND f.ref = :feature
LEFT JOIN usage_counters u ON u.customer_pk = c.pk AND u.feature_pk = f.pk
WHERE c.environment_pk = :env AND c.ref = :customer
"""


def _moment(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value
    # SQLite keeps UTC timestamps as naive ISO text.
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def _snapshot(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    return msgspec.json.decode(value)


async def fast_check(
    reader: FastReader,
    environment_pk: int,
    customer_ref: str,
    feature_ref: str,
    requested_usage: int | None,
    now: dt.datetime,
) -> EntitlementCheck | None:
    """The answer, or None when the full check must decide."""
    row = await reader.one(
        CHECK_SQL, {"env": environment_pk, "customer": customer_ref, "feature": feature_ref}
    )
    if row is None:
        return None
    snapshot = _snapshot(row[0])
    valid_until = _moment(row[1])
    if (
        snapshot is None
        or snapshot.get("version") != SNAPSHOT_VERSION
        or (valid_until and valid_until <= now)
    ):
        return None
    grant = snapshot["features"].get(feature_ref)
    if grant is None:
        return None
    if grant["type"] != FeatureType.METERED:
        return answer(feature_ref, grant, current_usage=None, requested_usage=requested_usage, window=None)
    window = current_window(grant, now)
    usage = usage_in_window(row[2], _moment(row[3]), window[0]) if row[2] is not None else 0
    return answer(
        feature_ref,
        grant,
        current_usage=usage,
        requested_usage=1 if requested_usage is None else requested_usage,
        window=window,
    )
