"""Usage reporting: events for the record, counters for the entitlement check.

One batch (≤ 1,000 reports) costs a constant number of statements: look up the customers
and features (two IN queries), insert the events in bulk with ON CONFLICT DO NOTHING
RETURNING (so a repeated idempotency key, even from a concurrent request, changes nothing),
then upsert one counter row per (customer, feature) of the newly inserted events. The counter
upsert is atomic in SQL (`value = value + delta`, reset when its window is older), so
concurrent batches never lose updates. The whole batch is validated before anything is
written: a bad row rejects the batch with the row's index in `param`.

Windows: a counter stores the start of the usage window its value belongs to (see
entitlements.current_window). A report timestamped before the current window is stored as an
event (for billing that closed period) but does not move the current counter.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, cast

from sqlalchemy import Table, case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import Feature, FeatureType
from app.core.errors import InvalidRequest, NotFound, TollgateError
from app.customers.models import Customer
from app.db import utcnow
from app.subscriptions.entitlements import current_window, refresh_snapshots, snapshot_is_fresh
from app.subscriptions.models import UsageCounter, UsageEvent, UsageUpdateBehavior
from app.subscriptions.periods import EPOCH
from app.subscriptions.schemas import MAX_USAGE_BATCH, ReportUsageResult, UsageOutcome, UsageReport

_events = cast(Table, UsageEvent.__table__)
_counters = cast(Table, UsageCounter.__table__)
_statements: dict[tuple[str, str], Any] = {}


def _statement(dialect: str, kind: str) -> Any:
    """The dialect's INSERT ... ON CONFLICT for events ("events") or counters (DELTA / SET)."""
    key = (dialect, kind)
    if key in _statements:
        return _statements[key]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if kind == "events":
        statement = (
            insert(_events)
            .on_conflict_do_nothing(index_elements=["environment_pk", "idempotency_key"])
            .returning(_events.c.idempotency_key)
        )
    else:
        stmt = insert(_counters)
        excluded, current = stmt.excluded, _counters.c
        newer = current.window_start < excluded.window_start
        if kind == UsageUpdateBehavior.SET:
            value: Any = excluded.value
        else:
            # A counter of an older window restarts from this delta; otherwise it adds up.
            value = case(
                (current.window_start.is_(None) | newer, excluded.value), else_=current.value + excluded.value
            )
        statement = stmt.on_conflict_do_update(
            index_elements=["customer_pk", "feature_pk"],
            set_={
                "value": value,
                "window_start": case(
                    (current.window_start.is_(None) | newer, excluded.window_start),
                    else_=current.window_start,
                ),
                "updated_at": excluded.updated_at,
            },
        )
    _statements[key] = statement
    return statement


def _timestamp(value: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When the usage happened: UTC if no offset was given, never in the future."""
    if value is None:
        return now
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return min(value, now)


def _fold(reports: list[tuple[UsageUpdateBehavior, int]]) -> tuple[UsageUpdateBehavior, int]:
    """Reports of one counter in order, reduced to one SET (if any SET) or one DELTA."""
    behavior, value = UsageUpdateBehavior.DELTA, 0
    for kind, amount in reports:
        if kind == UsageUpdateBehavior.SET:
            behavior, value = UsageUpdateBehavior.SET, amount
        else:
            value += amount
    return behavior, value


async def report_usage(
    session: AsyncSession, environment_pk: int, usages: list[UsageReport], *, now: dt.datetime | None = None
) -> ReportUsageResult:
    now = now or utcnow()
    if len(usages) > MAX_USAGE_BATCH:
        raise InvalidRequest(
            f"At most {MAX_USAGE_BATCH} usage reports per call; got {len(usages)}.",
            code="batch_too_large",
            param="usages",
        )
    if not usages:
        return ReportUsageResult(accepted=0, duplicates=0, data=[])
    seen: set[str] = set()
    for index, report in enumerate(usages):
        if not report.idempotency_key or len(report.idempotency_key) > 200:
            raise InvalidRequest(
                "idempotencyKey must be 1 to 200 characters.",
                code="invalid_idempotency_key",
                param=f"usages[{index}].idempotencyKey",
            )
        if report.idempotency_key in seen:
            raise InvalidRequest(
                f"The idempotency key '{report.idempotency_key}' appears twice in this batch.",
                code="duplicate_idempotency_key",
                param=f"usages[{index}].idempotencyKey",
            )
        seen.add(report.idempotency_key)
        if report.update_behavior == UsageUpdateBehavior.SET and report.value < 0:
            raise InvalidRequest(
                "A SET value cannot be negative.", code="invalid_usage_value", param=f"usages[{index}].value"
            )

    customer_refs = {u.customer_id for u in usages}
    feature_refs = {u.feature_id for u in usages}
    # Customers with their snapshots in one query: the usage window comes from the snapshot.
    customer_rows = {
        row[0]: row
        for row in await session.execute(
            select(
                Customer.ref,
                Customer.pk,
                Customer.entitlements_snapshot,
                Customer.snapshot_valid_until,
                Customer.updated_at,
            ).where(Customer.environment_pk == environment_pk, Customer.ref.in_(customer_refs))
        )
    }
    customers = {ref: row[1] for ref, row in customer_rows.items()}
    features = {
        row.ref: row
        for row in await session.execute(
            select(Feature.ref, Feature.pk, Feature.feature_type).where(
                Feature.environment_pk == environment_pk, Feature.ref.in_(feature_refs)
            )
        )
    }
    for index, report in enumerate(usages):
        if report.customer_id not in customers:
            error: TollgateError = NotFound(
                f"No customer with id '{report.customer_id}' exists in this environment.",
                code="customer_not_found",
            )
            error.param = f"usages[{index}].customerId"
            raise error
        feature = features.get(report.feature_id)
        if feature is None:
            error = NotFound(
                f"No feature with id '{report.feature_id}' exists in this environment.",
                code="feature_not_found",
            )
            error.param = f"usages[{index}].featureId"
            raise error
        if feature.feature_type != FeatureType.METERED:
            raise InvalidRequest(
                f"Feature '{report.feature_id}' is {feature.feature_type.value}; usage is reported for METERED features.",
                code="feature_not_metered",
                param=f"usages[{index}].featureId",
            )

    rows = [
        {
            "environment_pk": environment_pk,
            "customer_pk": customers[u.customer_id],
            "feature_pk": features[u.feature_id].pk,
            "value": u.value,
            "behavior": u.update_behavior,
            "idempotency_key": u.idempotency_key,
            "timestamp": _timestamp(u.timestamp, now),
            "created_at": now,
        }
        for u in usages
    ]
    connection = await session.connection()
    dialect = connection.dialect.name
    # executemany of one cached statement (SQLAlchemy batches it into multi-row INSERTs with
    # RETURNING): far cheaper than compiling a 1,000-row VALUES clause on every call.
    # Sorted keys: concurrent batches sharing keys take their unique-index locks in one order
    # (no deadlock on PostgreSQL); counters below are upserted in (customer, feature) order.
    result = await connection.execute(
        _statement(dialect, "events"), sorted(rows, key=lambda r: r["idempotency_key"])
    )
    inserted = {row[0] for row in result}

    # Fold the new reports per counter; the window comes from the customer's entitlement.
    grants_by_customer: dict[int, dict[str, Any]] = {}
    pending: dict[tuple[int, int], list[tuple[UsageUpdateBehavior, int]]] = defaultdict(list)
    windows: dict[tuple[int, int], dt.datetime] = {}
    stale: dict[int, dt.datetime] = {}
    for _, customer_pk, snapshot, valid_until, stamp in customer_rows.values():
        if snapshot is not None and snapshot_is_fresh(snapshot, valid_until, now):
            grants_by_customer[customer_pk] = snapshot["features"]
        else:
            stale[customer_pk] = stamp
    grants_by_customer.update(await refresh_snapshots(session, stale, now))
    for report, row in zip(usages, rows, strict=True):
        if report.idempotency_key not in inserted:
            continue
        customer_pk = row["customer_pk"]
        grant = grants_by_customer[customer_pk].get(report.feature_id)
        window_start = current_window(grant, now)[0] if grant else EPOCH
        if row["timestamp"] < window_start:
            continue  # belongs to a closed window: kept as an event only
        key = (customer_pk, row["feature_pk"])
        windows[key] = window_start
        pending[key].append((report.update_behavior, report.value))

    by_behavior: dict[UsageUpdateBehavior, list[dict[str, Any]]] = defaultdict(list)
    for key, reports in sorted(pending.items()):
        behavior, value = _fold(reports)
        by_behavior[behavior].append(
            {
                "customer_pk": key[0],
                "feature_pk": key[1],
                "value": value,
                "window_start": windows[key],
                "updated_at": now,
            }
        )
    for behavior, counter_rows in by_behavior.items():
        await connection.execute(_statement(dialect, behavior.value), counter_rows)

    outcomes = [
        UsageOutcome(
            idempotency_key=u.idempotency_key,
            customer_id=u.customer_id,
            feature_id=u.feature_id,
            applied=u.idempotency_key in inserted,
        )
        for u in usages
    ]
    return ReportUsageResult(accepted=len(inserted), duplicates=len(usages) - len(inserted), data=outcomes)
