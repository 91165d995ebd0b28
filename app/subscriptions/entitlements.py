"""The entitlement engine: what may this customer use right now?

Effective entitlements are computed from the customer's live subscriptions (see
aggregation.py for the combination rules and lifecycle.py for when a subscription grants)
and materialised in `Customer.entitlements_snapshot`, keyed by feature id, with
`snapshot_valid_until` = the next moment they can change by time alone (a trial end, a
cancellation, a scheduled change, a future start). A NULL or expired snapshot is recomputed
on read. Writes: a change to customers' subscriptions (service calls, the lifecycle worker)
recomputes their snapshots in the same transaction (`rematerialize_customers`); catalog
changes (a plan's or add-on's entitlements) set them to NULL (invalidate) and leave the
recompute to the next read or usage report.
Usage windows are not part of the validity: they are derived at read time from the stored
reset period and anchor, so a month rolling over needs no recompute.

The check is one SELECT joining the customer row (unique index on environment + id), the
feature (unique index) and its usage counter (primary key): `checks.fast_check` runs it
without an ORM session and answers the common case; `check_entitlement` (Core, in a session)
handles the rest and refreshes stale snapshots.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

import msgspec
from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import (
    BillingPeriod,
    Entitlement,
    Feature,
    FeatureType,
    MeterType,
    Plan,
    ResetPeriod,
    TrialEndBehavior,
)
from app.core.errors import InvalidRequest, not_found
from app.customers.models import Customer
from app.db import utcnow
from app.subscriptions.aggregation import Grant, apply_addons, most_generous, override_chain
from app.subscriptions.lifecycle import LIVE_STATUSES, SubState, advance, state_of
from app.subscriptions.models import Subscription, SubscriptionAddon, UsageCounter
from app.subscriptions.periods import EPOCH, reset_window
from app.subscriptions.schemas import EntitlementCheck
from app.subscriptions.sql import pairs as _pairs

SNAPSHOT_VERSION = 1


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _grant_for(
    entitlement: Entitlement, feature: Feature, *, state: SubState, start_date: dt.datetime
) -> Grant:
    window: str | None
    anchor = start_date
    reset = entitlement.reset_period
    if (
        feature.feature_type != FeatureType.METERED
        or feature.meter_type == MeterType.FLUCTUATING
        or reset is None
    ):
        window = None  # levels (seats) and numbers never reset
    elif reset == ResetPeriod.BILLING_PERIOD:
        window = (
            ResetPeriod.YEAR.value
            if state.billing_period == BillingPeriod.ANNUALLY
            else ResetPeriod.MONTH.value
        )
        anchor = state.billing_anchor
    else:
        window = reset.value
    return Grant(
        pk=feature.pk,
        type=feature.feature_type.value,
        meter=feature.meter_type.value if feature.meter_type else None,
        unlimited=entitlement.unlimited,
        limit=None if entitlement.unlimited else entitlement.usage_limit,
        soft=entitlement.soft_limit,
        reset=reset.value if reset else None,
        window=window,
        anchor=_iso(anchor) if window else None,
    )


async def _plan_chains(session: AsyncSession, plan_pks: set[int]) -> dict[int, list[int]]:
    """plan pk -> [root, ..., plan] following parent links (cycle-safe)."""
    parents: dict[int, int | None] = {}
    frontier = set(plan_pks)
    while frontier:
        rows = await session.execute(select(Plan.pk, Plan.parent_plan_pk).where(Plan.pk.in_(frontier)))
        frontier = set()
        for pk, parent in rows:
            parents[pk] = parent
            if parent is not None and parent not in parents:
                frontier.add(parent)
    chains: dict[int, list[int]] = {}
    for pk in plan_pks:
        chain: list[int] = []
        current: int | None = pk
        while current is not None and current not in chain:
            chain.append(current)
            current = parents.get(current)
        chains[pk] = list(reversed(chain))
    return chains


async def compute_entitlements(
    session: AsyncSession, customer_pk: int, now: dt.datetime
) -> tuple[dict[str, Grant], dt.datetime | None]:
    """The customer's effective grants at `now` and until when they hold."""
    return (await compute_entitlements_many(session, [customer_pk], now))[customer_pk]


async def compute_entitlements_many(
    session: AsyncSession, customer_pks: Iterable[int], now: dt.datetime
) -> dict[int, tuple[dict[str, Grant], dt.datetime | None]]:
    """`compute_entitlements` for many customers in a fixed number of queries."""
    wanted = set(customer_pks)
    result: dict[int, tuple[dict[str, Grant], dt.datetime | None]] = {pk: ({}, None) for pk in wanted}
    subs = list(
        (
            await session.scalars(
                select(Subscription).where(
                    Subscription.customer_pk.in_(wanted), Subscription.status.in_(LIVE_STATUSES)
                )
            )
        ).all()
    )
    if not subs:
        return result
    addon_rows: dict[int, list[SubscriptionAddon]] = defaultdict(list)
    for row in await session.scalars(
        select(SubscriptionAddon).where(SubscriptionAddon.subscription_pk.in_([s.pk for s in subs]))
    ):
        addon_rows[row.subscription_pk].append(row)
    behaviors = _pairs(
        await session.execute(
            select(Plan.pk, Plan.trial_end_behavior).where(Plan.pk.in_({s.plan_pk for s in subs}))
        )
    )
    states: dict[int, list[tuple[SubState, dt.datetime]]] = defaultdict(list)
    valid: dict[int, dt.datetime | None] = {}
    for sub in subs:
        state = advance(
            state_of(sub, addon_rows[sub.pk]),
            behaviors.get(sub.plan_pk, TrialEndBehavior.CONVERT_TO_PAID),
            now,
        )
        upcoming, current = state.next_event(), valid.get(sub.customer_pk)
        if upcoming is not None and (current is None or upcoming < current):
            valid[sub.customer_pk] = upcoming
        if state.grants:
            states[sub.customer_pk].append((state, sub.start_date))
    granting = [item for items in states.values() for item in items]
    if not granting:
        return {pk: ({}, valid.get(pk)) for pk in wanted}

    chains = await _plan_chains(session, {s.plan_pk for s, _ in granting})
    plan_pks = {pk for chain in chains.values() for pk in chain}
    addon_pks = {a[0] for s, _ in granting for a in s.addons}
    ent_query = (
        select(Entitlement, Feature)
        .join(Feature, Feature.pk == Entitlement.feature_pk)
        .where(Entitlement.plan_pk.in_(plan_pks) | Entitlement.addon_pk.in_(addon_pks))
    )
    by_plan: dict[int, list[tuple[Entitlement, Feature]]] = defaultdict(list)
    by_addon: dict[int, list[tuple[Entitlement, Feature]]] = defaultdict(list)
    for ent, feature in await session.execute(ent_query):
        if ent.plan_pk is not None:
            by_plan[ent.plan_pk].append((ent, feature))
        elif ent.addon_pk is not None:
            by_addon[ent.addon_pk].append((ent, feature))

    for customer_pk in wanted:
        per_subscription: list[dict[str, Grant]] = []
        for state, start_date in states.get(customer_pk, []):
            chain = [
                {f.ref: _grant_for(e, f, state=state, start_date=start_date) for e, f in by_plan[pk]}
                for pk in chains[state.plan_pk]
            ]
            addon_grants = [
                ({f.ref: _grant_for(e, f, state=state, start_date=start_date) for e, f in by_addon[pk]}, qty)
                for pk, qty, _ in state.addons
            ]
            per_subscription.append(apply_addons(override_chain(chain), addon_grants))
        result[customer_pk] = (most_generous(per_subscription), valid.get(customer_pk))
    return result


async def load_grants(
    session: AsyncSession, environment_pk: int, customer_ref: str, now: dt.datetime
) -> tuple[int, dict[str, Any]]:
    """(customer pk, {featureId: grant as JSON dict}) from the snapshot, recomputed if stale."""
    row = (
        await session.execute(
            select(
                Customer.pk,
                Customer.entitlements_snapshot,
                Customer.snapshot_valid_until,
                Customer.updated_at,
            ).where(Customer.environment_pk == environment_pk, Customer.ref == customer_ref)
        )
    ).first()
    if row is None:
        raise not_found("customer", customer_ref)
    customer_pk, snapshot, valid_until, seen = row[0], row[1], row[2], row[3]
    if snapshot is not None and snapshot_is_fresh(snapshot, valid_until, now):
        return customer_pk, snapshot["features"]
    return customer_pk, await refresh_snapshot(session, customer_pk, now, seen=seen)


def snapshot_is_fresh(
    snapshot: dict[str, Any] | None, valid_until: dt.datetime | None, now: dt.datetime
) -> bool:
    return (
        snapshot is not None
        and snapshot.get("version") == SNAPSHOT_VERSION
        and (valid_until is None or valid_until > now)
    )


async def refresh_snapshot(
    session: AsyncSession, customer_pk: int, now: dt.datetime, *, seen: dt.datetime | None = None
) -> dict[str, Any]:
    """Recompute and store the snapshot.

    Every invalidation is an UPDATE of the customer row, which moves `updated_at`. The
    snapshot is stored only if `updated_at` is still the value read before computing
    (`seen`): a computation that raced a concurrent subscription change is answered once but
    never persisted over the newer invalidation. Storing keeps `updated_at` unchanged.
    """
    grants, valid_until = await compute_entitlements(session, customer_pk, now)
    features = {ref: msgspec.to_builtins(grant) for ref, grant in sorted(grants.items())}
    condition = Customer.pk == customer_pk
    if seen is not None:
        condition = condition & (Customer.updated_at == seen)
    await session.execute(
        update(Customer)
        .where(condition)
        .values(
            updated_at=Customer.updated_at,
            entitlements_snapshot={
                "version": SNAPSHOT_VERSION,
                "computedAt": _iso(now),
                "features": features,
            },
            snapshot_valid_until=valid_until,
        )
        .execution_options(synchronize_session=False)
    )
    return features


_customer_table = cast(Table, Customer.__table__)
_STORE_SNAPSHOT = (
    update(_customer_table)
    .where(_customer_table.c.pk == bindparam("b_pk"), _customer_table.c.updated_at == bindparam("b_seen"))
    .values(
        entitlements_snapshot=bindparam("b_snapshot"),
        snapshot_valid_until=bindparam("b_until"),
        updated_at=_customer_table.c.updated_at,
    )
)


async def refresh_snapshots(
    session: AsyncSession, seen_by_customer: dict[int, dt.datetime], now: dt.datetime
) -> dict[int, dict[str, Any]]:
    """`refresh_snapshot` for many customers: a few queries and one executemany UPDATE."""
    if not seen_by_customer:
        return {}
    computed = await compute_entitlements_many(session, seen_by_customer, now)
    features: dict[int, dict[str, Any]] = {}
    params = []
    for pk, (grants, valid_until) in computed.items():
        features[pk] = {ref: msgspec.to_builtins(grant) for ref, grant in sorted(grants.items())}
        snapshot = {"version": SNAPSHOT_VERSION, "computedAt": _iso(now), "features": features[pk]}
        params.append(
            {"b_pk": pk, "b_seen": seen_by_customer[pk], "b_snapshot": snapshot, "b_until": valid_until}
        )
    await (await session.connection()).execute(_STORE_SNAPSHOT, params)
    return features


async def invalidate_customers(session: AsyncSession, customer_pks: Iterable[int]) -> None:
    pks = sorted(set(customer_pks))
    if not pks:
        return
    await session.execute(
        update(Customer)
        .where(Customer.pk.in_(pks))
        .values(entitlements_snapshot=None, snapshot_valid_until=None)
        .execution_options(synchronize_session=False)
    )


async def rematerialize_customers(
    session: AsyncSession, customer_pks: Iterable[int], now: dt.datetime
) -> None:
    """Invalidate, then recompute at once, the snapshots of customers whose subscriptions changed.

    Done in the changing transaction, so the next check finds a fresh snapshot instead of
    computing (and writing) one on the read path. The invalidating UPDATE moves `updated_at`
    first, which tells any concurrent read-path computation not to store its older result.
    """
    pks = sorted(set(customer_pks))
    await invalidate_customers(session, pks)
    for pk in pks:
        await refresh_snapshot(session, pk, now)


async def _mark_stale(session: AsyncSession, customers: Any) -> None:
    await session.execute(
        update(Customer)
        .where(Customer.pk.in_(customers), Customer.entitlements_snapshot.is_not(None))
        .values(entitlements_snapshot=None, snapshot_valid_until=None)
        .execution_options(synchronize_session=False)
    )


async def invalidate_entitlements_for_plan(session: AsyncSession, plan_pk: int) -> None:
    """For the catalog: a plan's entitlements (or its parent) changed.

    Only its subscribers and those of plans built on it ("everything in X, plus") are marked;
    everyone else's snapshot stays valid, so an edit does not send a whole environment to the
    slow path at once.
    """
    env_pk = await session.scalar(select(Plan.environment_pk).where(Plan.pk == plan_pk))
    rows = await session.execute(select(Plan.pk, Plan.parent_plan_pk).where(Plan.environment_pk == env_pk))
    parents = {pk: parent for pk, parent in rows}
    reached = {plan_pk}
    while more := {pk for pk, parent in parents.items() if parent in reached} - reached:
        reached |= more
    await _mark_stale(session, select(Subscription.customer_pk).where(Subscription.plan_pk.in_(reached)))


async def invalidate_entitlements_for_addon(session: AsyncSession, addon_pk: int) -> None:
    """For the catalog: an add-on's entitlements changed; the customers whose subscriptions carry it."""
    await _mark_stale(
        session,
        select(Subscription.customer_pk)
        .join(SubscriptionAddon, SubscriptionAddon.subscription_pk == Subscription.pk)
        .where(SubscriptionAddon.addon_pk == addon_pk),
    )


def current_window(grant: dict[str, Any], now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    window = grant.get("window")
    if not window:
        return EPOCH, None
    return reset_window(window, dt.datetime.fromisoformat(grant["anchor"]), now)


def usage_in_window(value: int | None, window_start: dt.datetime | None, current_start: dt.datetime) -> int:
    """A counter last written in an earlier window reads as 0 (it is reset on its next write)."""
    if value is None or window_start is None or window_start < current_start:
        return 0
    return value


async def _counter(
    session: AsyncSession, customer_pk: int, feature_pk: int
) -> tuple[int, dt.datetime | None] | None:
    row = (
        await session.execute(
            select(UsageCounter.value, UsageCounter.window_start).where(
                UsageCounter.customer_pk == customer_pk, UsageCounter.feature_pk == feature_pk
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


def answer(
    feature_ref: str,
    grant: dict[str, Any],
    *,
    current_usage: int | None,
    requested_usage: int | None,
    window: tuple[dt.datetime, dt.datetime | None] | None,
) -> EntitlementCheck:
    """The check's answer for an entitled feature (see `check_entitlement` for the rules)."""
    feature_type = grant["type"]
    unlimited = bool(grant.get("unlimited"))
    limit = grant.get("limit")
    soft = bool(grant.get("soft"))
    has_access = True
    reason: str | None = None
    exceeded = False
    if feature_type == FeatureType.METERED:
        used = (current_usage or 0) + (requested_usage or 0)
        exceeded = not unlimited and limit is not None and used > limit
    elif feature_type == FeatureType.NUMBER and requested_usage is not None:
        exceeded = not unlimited and limit is not None and requested_usage > limit
    if exceeded and not soft:
        has_access, reason = False, "UsageLimitExceeded"
    return EntitlementCheck(
        feature_id=feature_ref,
        feature_type=feature_type,
        has_access=has_access,
        access_denied_reason=reason,
        is_unlimited=unlimited,
        usage_limit=None if unlimited else limit,
        current_usage=current_usage,
        requested_usage=requested_usage,
        has_soft_limit=soft,
        soft_limit_exceeded=exceeded and soft,
        reset_period=grant.get("reset"),
        usage_period_start=window[0] if window and window[0] != EPOCH else None,
        usage_period_end=window[1] if window else None,
    )


async def check_entitlement(
    session: AsyncSession,
    environment_pk: int,
    customer_ref: str,
    feature_ref: str,
    *,
    requested_usage: int | None = None,
    now: dt.datetime | None = None,
) -> EntitlementCheck:
    """May the customer use the feature (`requestedUsage` more units of it)?

    - METERED: `requestedUsage` defaults to 1 ("may I use one more?"); access when
      usage + requested ≤ limit, or unlimited. A soft limit keeps access past the limit and
      reports it (`softLimitExceeded`).
    - NUMBER: `usageLimit` is the number (e.g. max projects); with `requestedUsage` the
      answer says whether that many fit.
    - BOOLEAN: access when any live subscription grants it.
    An unknown customer is a 404 (customer_not_found), an unknown feature feature_not_found,
    a known feature without entitlement `hasAccess: false` with NoFeatureEntitlement.
    """
    now = now or utcnow()
    if requested_usage is not None and requested_usage < 0:
        raise InvalidRequest(
            "requestedUsage cannot be negative.", code="invalid_request", param="requestedUsage"
        )
    # One round trip: customer (unique index), feature (unique index), counter (primary key).
    row = (
        await (await session.connection()).execute(
            _CHECK_QUERY, {"env": environment_pk, "customer": customer_ref, "feature": feature_ref}
        )
    ).first()
    if row is None:
        raise not_found("customer", customer_ref)
    customer_pk, snapshot, valid_until, seen, feature_pk, feature_type, value, window_start = row
    if feature_pk is None:
        raise not_found("feature", feature_ref)
    grants = (
        snapshot["features"]
        if snapshot is not None and snapshot_is_fresh(snapshot, valid_until, now)
        else None
    )
    if grants is None:
        grants = await refresh_snapshot(session, customer_pk, now, seen=seen)
    grant = grants.get(feature_ref)
    metered = feature_type == FeatureType.METERED
    if grant is None:
        return EntitlementCheck(
            feature_id=feature_ref,
            feature_type=str(feature_type),
            has_access=False,
            access_denied_reason="NoFeatureEntitlement",
            current_usage=usage_in_window(value, window_start, EPOCH) if metered else None,
            requested_usage=(1 if requested_usage is None else requested_usage)
            if metered
            else requested_usage,
        )
    if not metered:
        return answer(feature_ref, grant, current_usage=None, requested_usage=requested_usage, window=None)
    window = current_window(grant, now)
    return answer(
        feature_ref,
        grant,
        current_usage=usage_in_window(value or 0, window_start, window[0]),
        requested_usage=1 if requested_usage is None else requested_usage,
        window=window,
    )


_customers = Customer.__table__
_features = Feature.__table__
_counters = UsageCounter.__table__
_CHECK_QUERY = (
    select(
        _customers.c.pk,
        _customers.c.entitlements_snapshot,
        _customers.c.snapshot_valid_until,
        _customers.c.updated_at,
        _features.c.pk,
        _features.c.feature_type,
        _counters.c.value,
        _counters.c.window_start,
    )
    .select_from(_customers)
    .outerjoin(
        _features,
        and_(
            _features.c.environment_pk == _customers.c.environment_pk, _features.c.ref == bindparam("feature")
        ),
    )
    .outerjoin(
        _counters, and_(_counters.c.customer_pk == _customers.c.pk, _counters.c.feature_pk == _features.c.pk)
    )
    .where(_customers.c.environment_pk == bindparam("env"), _customers.c.ref == bindparam("customer"))
)


async def list_entitlements(
    session: AsyncSession, environment_pk: int, customer_ref: str, *, now: dt.datetime | None = None
) -> list[EntitlementCheck]:
    """Every feature the customer is entitled to, with current usage (no usage requested)."""
    now = now or utcnow()
    customer_pk, grants = await load_grants(session, environment_pk, customer_ref, now)
    counters = {
        row.feature_pk: (row.value, row.window_start)
        for row in (
            await session.execute(
                select(UsageCounter.feature_pk, UsageCounter.value, UsageCounter.window_start).where(
                    UsageCounter.customer_pk == customer_pk
                )
            )
        )
    }
    result = []
    for ref, grant in sorted(grants.items()):
        if grant["type"] == FeatureType.METERED:
            window = current_window(grant, now)
            counter = counters.get(grant["pk"])
            usage = usage_in_window(*counter, window[0]) if counter else 0
            result.append(answer(ref, grant, current_usage=usage, requested_usage=0, window=window))
        else:
            result.append(answer(ref, grant, current_usage=None, requested_usage=None, window=None))
    return result
