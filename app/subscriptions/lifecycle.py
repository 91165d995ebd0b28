"""Subscription lifecycle as a pure function of (subscription, now), plus the worker step.

`advance(state, trial_end_behavior, now)` replays every time-driven event due by `now`, in
order: the trial ends (converts to ACTIVE in a new period anchored at the trial end, or ends
the subscription as EXPIRED, as the plan says), a scheduled change takes effect, a
cancellation at period end ends it (CANCELED), and billing periods roll over from the
anchor. The entitlement engine evaluates the same function on read, so it is right even if
the worker (`advance_subscriptions`) has not persisted the transitions yet.

Payment: for now nothing here collects money, so a trial converts straight to ACTIVE. The
checkout/billing work plugs in through `PaymentGate` (see service.py): a subscription that
must be paid first is stored as PAYMENT_PENDING with `activated_at` NULL and grants nothing
until activated. A subscription that was active before and whose renewal payment failed
(PAYMENT_PENDING with `activated_at` set) keeps granting: that is the dunning grace period,
ended by billing cancelling the subscription.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import BillingPeriod, Plan, TrialEndBehavior
from app.core.outbox import record_change
from app.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionStatus
from app.subscriptions.periods import billing_period_window
from app.subscriptions.sql import pairs as _pairs

S = SubscriptionStatus
LIVE_STATUSES = (S.NOT_STARTED, S.IN_TRIAL, S.ACTIVE, S.PAYMENT_PENDING)


@dataclasses.dataclass(frozen=True)
class SubState:
    status: SubscriptionStatus
    plan_pk: int
    price_version_pk: int | None
    billing_period: BillingPeriod
    start_date: dt.datetime
    billing_anchor: dt.datetime
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    trial_end: dt.datetime | None = None
    cancel_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    activated_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    scheduled_change: dict[str, Any] | None = None
    unit_quantities: dict[str, Any] = dataclasses.field(default_factory=dict)
    # ((addon_pk, quantity, price_version_pk), ...)
    addons: tuple[tuple[int, int, int | None], ...] = ()

    @property
    def grants(self) -> bool:
        """Whether the subscription grants its plan's entitlements in this state."""
        if self.status in (S.IN_TRIAL, S.ACTIVE):
            return True
        # Never activated (e.g. waiting for Checkout): nothing. Active before: dunning grace.
        return self.status == S.PAYMENT_PENDING and self.activated_at is not None

    def next_event(self) -> dt.datetime | None:
        """The next moment this state changes by time alone (renewals excluded)."""
        candidates: list[dt.datetime] = []
        if self.status not in LIVE_STATUSES:
            return None
        if self.status == S.NOT_STARTED:
            candidates.append(self.start_date)
        if self.status == S.IN_TRIAL and self.trial_end is not None:
            candidates.append(self.trial_end)
        if self.cancel_at is not None:
            candidates.append(self.cancel_at)
        if self.scheduled_at is not None:
            candidates.append(self.scheduled_at)
        return min(candidates) if candidates else None


def state_of(sub: Subscription, addons: list[SubscriptionAddon] | None = None) -> SubState:
    return SubState(
        status=sub.status,
        plan_pk=sub.plan_pk,
        price_version_pk=sub.price_version_pk,
        billing_period=sub.billing_period,
        start_date=sub.start_date,
        billing_anchor=sub.billing_anchor,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        trial_end=sub.trial_end,
        cancel_at=sub.cancel_at,
        ended_at=sub.ended_at,
        activated_at=sub.activated_at,
        scheduled_at=sub.scheduled_at,
        scheduled_change=sub.scheduled_change,
        unit_quantities=dict(sub.unit_quantities or {}),
        addons=tuple((a.addon_pk, a.quantity, a.price_version_pk) for a in (addons or [])),
    )


def _period_from(state: SubState, anchor: dt.datetime, at: dt.datetime, period: BillingPeriod) -> SubState:
    start, end = billing_period_window(anchor, period, at)
    return dataclasses.replace(
        state, billing_anchor=anchor, current_period_start=start, current_period_end=end
    )


def _apply_scheduled(state: SubState, at: dt.datetime) -> SubState:
    change = state.scheduled_change or {}
    period = BillingPeriod(change.get("billingPeriod", state.billing_period))
    # A new billing period starts a new cycle; a plan change at period end keeps the anchor.
    anchor = at if period != state.billing_period else state.billing_anchor
    new = dataclasses.replace(
        state,
        plan_pk=int(change.get("planPk", state.plan_pk)),
        price_version_pk=change.get("priceVersionPk", state.price_version_pk),
        billing_period=period,
        unit_quantities=dict(change.get("unitQuantities", state.unit_quantities)),
        addons=tuple(
            (int(a["addonPk"]), int(a["quantity"]), a.get("priceVersionPk")) for a in change.get("addons", [])
        ),
        scheduled_at=None,
        scheduled_change=None,
    )
    return _period_from(new, anchor, at, period)


def advance(state: SubState, trial_end_behavior: TrialEndBehavior, now: dt.datetime) -> SubState:
    """The subscription as it is at `now`, given its stored state (see the module docstring)."""
    for _ in range(10_000):  # bounded: renewals of a very stale row step one period at a time
        if state.status not in LIVE_STATUSES:
            return state
        events: list[tuple[dt.datetime, int, str]] = []
        if state.status == S.NOT_STARTED:
            events.append((state.start_date, 0, "start"))
        if state.cancel_at is not None:
            events.append((state.cancel_at, 1, "cancel"))
        if state.status == S.IN_TRIAL and state.trial_end is not None:
            events.append((state.trial_end, 2, "trial_end"))
        if state.scheduled_at is not None:
            events.append((state.scheduled_at, 3, "scheduled"))
        if state.status in (S.ACTIVE, S.PAYMENT_PENDING):
            events.append((state.current_period_end, 4, "renew"))
        due = [e for e in events if e[0] <= now]
        if not due:
            return state
        at, _, kind = min(due)
        if kind == "start":
            state = dataclasses.replace(state, status=S.ACTIVE, activated_at=state.activated_at or at)
            state = _period_from(state, state.billing_anchor, at, state.billing_period)
        elif kind == "cancel":
            return dataclasses.replace(
                state, status=S.CANCELED, ended_at=at, scheduled_at=None, scheduled_change=None
            )
        elif kind == "trial_end":
            if trial_end_behavior == TrialEndBehavior.CANCEL_SUBSCRIPTION:
                return dataclasses.replace(
                    state, status=S.EXPIRED, ended_at=at, scheduled_at=None, scheduled_change=None
                )
            state = dataclasses.replace(state, status=S.ACTIVE, activated_at=state.activated_at or at)
            state = _period_from(state, at, at, state.billing_period)
        elif kind == "scheduled":
            state = _apply_scheduled(state, at)
        else:
            state = _period_from(state, state.billing_anchor, at, state.billing_period)
    return state


_COPIED = (
    "status",
    "plan_pk",
    "price_version_pk",
    "billing_period",
    "billing_anchor",
    "current_period_start",
    "current_period_end",
    "ended_at",
    "activated_at",
    "scheduled_at",
    "scheduled_change",
    "unit_quantities",
)


def store_state(sub: Subscription, before: SubState, after: SubState) -> bool:
    """Copy a state's fields onto the row; True when anything changed. Add-ons are synced by the caller."""
    changed = False
    for name in _COPIED:
        value = getattr(after, name)
        if getattr(before, name) != value:
            setattr(sub, name, value)
            changed = True
    return changed


async def sync_addon_rows(
    session: AsyncSession, sub: Subscription, addons: tuple[tuple[int, int, int | None], ...]
) -> None:
    """Make the subscription's add-on rows match `addons` (deletes, updates, inserts)."""
    existing = {
        row.addon_pk: row
        for row in (
            await session.scalars(
                select(SubscriptionAddon).where(SubscriptionAddon.subscription_pk == sub.pk)
            )
        )
    }
    wanted = {pk: (qty, pv) for pk, qty, pv in addons}
    for pk, row in existing.items():
        if pk not in wanted:
            await session.delete(row)
    for pk, (qty, pv) in wanted.items():
        row = existing.get(pk)
        if row is None:
            session.add(
                SubscriptionAddon(subscription_pk=sub.pk, addon_pk=pk, quantity=qty, price_version_pk=pv)
            )
        else:
            row.quantity, row.price_version_pk = qty, pv
    await session.flush()


async def advance_subscriptions(
    session: AsyncSession, now: dt.datetime, *, limit: int = 500, environment_pk: int | None = None
) -> int:
    """Persist every transition due by `now` (trial ends, scheduled changes, cancellations,
    renewals). Returns how many subscriptions changed. Safe to run repeatedly and concurrently
    (on PostgreSQL rows are claimed with SKIP LOCKED)."""
    from app.subscriptions.entitlements import rematerialize_customers

    due = or_(
        and_(Subscription.status == S.NOT_STARTED, Subscription.start_date <= now),
        and_(Subscription.status == S.IN_TRIAL, Subscription.trial_end <= now),
        Subscription.cancel_at <= now,
        Subscription.scheduled_at <= now,
        and_(Subscription.status.in_((S.ACTIVE, S.PAYMENT_PENDING)), Subscription.current_period_end <= now),
    )
    query = (
        select(Subscription)
        .where(Subscription.status.in_(LIVE_STATUSES), due)
        .where(Subscription.environment_pk == environment_pk if environment_pk is not None else true())
        .order_by(Subscription.pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    subs = list((await session.scalars(query)).all())
    if not subs:
        return 0
    behaviors = _pairs(
        await session.execute(
            select(Plan.pk, Plan.trial_end_behavior).where(Plan.pk.in_({s.plan_pk for s in subs}))
        )
    )
    changed_customers: set[int] = set()
    count = 0
    for sub in subs:
        addon_rows = list(
            (
                await session.scalars(
                    select(SubscriptionAddon).where(SubscriptionAddon.subscription_pk == sub.pk)
                )
            ).all()
        )
        before = state_of(sub, addon_rows)
        after = advance(before, behaviors.get(sub.plan_pk, TrialEndBehavior.CONVERT_TO_PAID), now)
        if not store_state(sub, before, after):
            continue
        if after.addons != before.addons:
            await sync_addon_rows(session, sub, after.addons)
        count += 1
        changed_customers.add(sub.customer_pk)
        ended = after.status in (S.CANCELED, S.EXPIRED)
        record_change(session, sub.environment_pk, "subscription", sub.pk, "canceled" if ended else "updated")
    await session.flush()
    await rematerialize_customers(session, changed_customers, now)
    return count


async def advance_subscriptions_job(database: Any, now: dt.datetime) -> int:
    """Worker job (app.worker.Job signature): one bounded batch in its own transaction."""
    async with database.session() as session:
        return await advance_subscriptions(session, now)
