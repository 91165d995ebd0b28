"""View models of the widgets: plain data the templates render, built from catalog and customer rows.

The customer-specific part of the paywall (what each card's button says) is one function,
`customer_plan_states`: for a subscriber, each card's upgrade/downgrade comes from the
subscriptions preview's change type (`change_types`); the local price comparison is only the
fallback for a plan the preview cannot price.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import (
    Addon,
    BillingModel,
    BillingPeriod,
    Charge,
    Entitlement,
    FeatureType,
    MeterType,
    Plan,
    PriceVersion,
    PricingType,
    ResetPeriod,
)
from app.core.money import format_amount
from app.subscriptions.models import Subscription, SubscriptionStatus, UsageCounter
from app.widgets import queries
from app.widgets.appearance import fill

PERIOD_PARAM = {"monthly": BillingPeriod.MONTHLY, "annually": BillingPeriod.ANNUALLY}
PERIOD_SLUG = {v: k for k, v in PERIOD_PARAM.items()}


def parse_period(value: str | None) -> BillingPeriod | None:
    if not value:
        return None
    normalized = value.strip().lower()
    normalized = {"month": "monthly", "year": "annually", "annual": "annually", "yearly": "annually"}.get(
        normalized, normalized
    )
    return PERIOD_PARAM.get(normalized)


# ---- prices -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceView:
    kind: str  # free | custom | paid | unavailable
    amount: str = ""
    prefix: str = ""  # "Starting at"
    suffix: str = ""  # "/ month", "per seat / month"
    note: str = ""  # "$40 / month, billed annually"
    extras: tuple[str, ...] = ()  # "+ $0.01 per API call"
    monthly_minor: int = 0  # for comparing plans (upgrade or downgrade)


def _unit(charge: Charge) -> str:
    feature = charge.feature
    if feature is None:
        return "unit"
    return (feature.unit_singular or feature.name).lower()


def _charges(version: PriceVersion | None, period: BillingPeriod) -> list[Charge]:
    return [c for c in (version.charges if version else []) if c.billing_period is period]


def periods_of(version: PriceVersion | None) -> set[BillingPeriod]:
    return {c.billing_period for c in (version.charges if version else [])}


def price_view(
    pricing_type: PricingType, version: PriceVersion | None, period: BillingPeriod, texts: Mapping[str, str]
) -> PriceView:
    if pricing_type is PricingType.FREE:
        return PriceView(kind="free", amount=texts["free"])
    if pricing_type is PricingType.CUSTOM:
        return PriceView(kind="custom", amount=texts["custom"], note=texts["custom_price_note"])
    charges = _charges(version, period)
    if not charges:
        return PriceView(
            kind="unavailable",
            note=fill(texts["not_available_period"], period=texts[PERIOD_SLUG[period]].lower()),
        )
    currency = charges[0].currency
    per = texts["per_year"] if period is BillingPeriod.ANNUALLY else texts["per_month"]
    months = 12 if period is BillingPeriod.ANNUALLY else 1
    flat = sum(c.amount or 0 for c in charges if c.billing_model is BillingModel.FLAT_FEE)
    has_flat = any(c.billing_model is BillingModel.FLAT_FEE for c in charges)
    variable = [c for c in charges if c.billing_model is not BillingModel.FLAT_FEE]
    extras: list[str] = []
    headline: int | None = flat if has_flat else None
    suffix = per
    starting = False
    minimum = flat
    for index, charge in enumerate(variable):
        unit = _unit(charge)
        if charge.billing_model is BillingModel.PER_UNIT:
            amount = charge.amount or 0
            quantity = max(charge.min_quantity or 1, 1)
            minimum += amount * quantity
            if headline is None and index == 0:
                headline, suffix = amount, f"per {unit} {per}"
                starting = starting or quantity > 1
            else:
                extras.append(f"+ {format_amount(amount, currency)} per {unit}")
        elif charge.billing_model is BillingModel.TIERED:
            tiers = charge.tiers or []
            first = tiers[0] if tiers else {"unitAmount": 0, "flatAmount": 0}
            unit_amount = int(first.get("unitAmount") or 0)
            minimum += unit_amount + int(first.get("flatAmount") or 0)
            starting = True
            if headline is None and index == 0:
                headline, suffix = unit_amount, f"per {unit} {per}"
            else:
                extras.append(f"+ from {format_amount(unit_amount, currency)} per {unit}")
        else:  # usage based: billed on what is used, so the price is a floor
            starting = True
            extras.append(f"+ {format_amount(charge.amount or 0, currency)} per {unit}")
    if headline is None:
        headline = 0
    note = ""
    if period is BillingPeriod.ANNUALLY and suffix == per and headline:
        note = fill(texts["billed_annually"], amount=format_amount(headline // 12, currency))
    return PriceView(
        kind="paid",
        amount=format_amount(headline, currency),
        prefix=texts["starting_at"] if starting else "",
        suffix=suffix,
        note=note,
        extras=tuple(extras),
        monthly_minor=minimum // months,
    )


def saving_percent(versions: Iterable[PriceVersion | None]) -> int:
    """The largest saving of annual over twelve monthly payments among the plans, in whole percent."""
    best = 0
    for version in versions:
        monthly = sum(
            c.amount or 0
            for c in _charges(version, BillingPeriod.MONTHLY)
            if c.billing_model in (BillingModel.FLAT_FEE, BillingModel.PER_UNIT)
        )
        annual = sum(
            c.amount or 0
            for c in _charges(version, BillingPeriod.ANNUALLY)
            if c.billing_model in (BillingModel.FLAT_FEE, BillingModel.PER_UNIT)
        )
        if monthly > 0 and 0 < annual < monthly * 12:
            best = max(best, math.floor(100 * (monthly * 12 - annual) / (monthly * 12)))
    return best


# ---- entitlements -------------------------------------------------------------------------------

_RESET_TEXT = {
    ResetPeriod.DAY: " / day",
    ResetPeriod.WEEK: " / week",
    ResetPeriod.MONTH: " / month",
    ResetPeriod.YEAR: " / year",
    ResetPeriod.BILLING_PERIOD: " / billing period",
}


def entitlement_text(e: Entitlement, texts: Mapping[str, str]) -> str:
    feature = e.feature
    if feature.feature_type is FeatureType.BOOLEAN:
        return feature.name
    unit = feature.unit_plural or feature.unit_singular or feature.name.lower()
    if e.unlimited:
        return f"{texts['unlimited']} {unit}"
    limit = e.usage_limit or 0
    if limit == 1 and feature.unit_singular:
        unit = feature.unit_singular
    return f"{limit:,} {unit}{_RESET_TEXT.get(e.reset_period, '') if e.reset_period else ''}"


def _ordered(entitlements: Iterable[Entitlement]) -> list[Entitlement]:
    return sorted(entitlements, key=lambda e: (e.display_order, e.pk))


def own_entitlements(plan: Plan, parent: Plan | None) -> list[Entitlement]:
    """What a plan adds over its parent: features the parent lacks or grants less of."""
    if parent is None:
        return _ordered(plan.entitlements)
    inherited = {e.feature_pk: e for e in parent.entitlements}
    result = []
    for e in _ordered(plan.entitlements):
        base = inherited.get(e.feature_pk)
        if base is None or (base.unlimited, base.usage_limit, base.reset_period) != (
            e.unlimited,
            e.usage_limit,
            e.reset_period,
        ):
            result.append(e)
    return result


# ---- customer state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ButtonView:
    label: str
    action: (
        str  # subscribe | start_trial | upgrade | downgrade | switch_period | contact | current | scheduled
    )
    disabled: bool = False
    primary: bool = False


@dataclass(frozen=True, slots=True)
class PlanState:
    button: ButtonView
    notice: str = ""  # "12 days left in your trial", "Starts on 1 March 2027"
    cancel_scheduled: bool = False  # show the Cancel link of a scheduled change


def format_date(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return f"{moment.day} {calendar.month_name[moment.month]} {moment.year}"


def days_left(until: dt.datetime, now: dt.datetime) -> int:
    return max(0, math.ceil((until - now).total_seconds() / 86400))


def _anonymous_state(plan: Plan, texts: Mapping[str, str]) -> PlanState:
    if plan.pricing_type is PricingType.CUSTOM:
        return PlanState(ButtonView(texts["contact_us"], "contact"))
    if plan.pricing_type is PricingType.PAID and plan.trial_days:
        return PlanState(
            ButtonView(fill(texts["start_trial"], days=plan.trial_days), "start_trial", primary=True)
        )
    return PlanState(ButtonView(texts["get_started"], "subscribe", primary=True))


async def customer_plan_states(
    session: AsyncSession,
    *,
    customer_pk: int | None,
    product_pk: int,
    plans: list[Plan],
    prices: Mapping[int, PriceView],
    period: BillingPeriod,
    texts: Mapping[str, str],
    now: dt.datetime,
    all_prices: Mapping[int, PriceVersion | None] | None = None,
    subscriptions: list[Subscription] | None = None,
    change_types: Mapping[int, str] | None = None,
) -> dict[int, PlanState]:
    """What each plan card offers this customer, from their current subscription of the product.

    `prices` are the cards' prices in the selected period (used to tell upgrades from downgrades).
    """
    if customer_pk is None:
        return {p.pk: _anonymous_state(p, texts) for p in plans}
    if subscriptions is None:
        subscriptions = await queries.customer_subscriptions(session, customer_pk, product_pk)
    current: Subscription | None = subscriptions[0] if subscriptions else None
    if current is None:
        trial_allowed = not await queries.had_trial_or_paid(session, customer_pk, product_pk)
        states = {}
        for plan in plans:
            state = _anonymous_state(plan, texts)
            if state.button.action == "start_trial" and not trial_allowed:
                state = PlanState(ButtonView(texts["get_started"], "subscribe", primary=True))
            states[plan.pk] = state
        return states

    by_pk = {p.pk: p for p in plans}
    current_plan = by_pk.get(current.plan_pk) or current.plan
    scheduled = current.scheduled_change or {}
    scheduled_plan_pk = int(scheduled["planPk"]) if scheduled.get("planPk") is not None else None
    scheduled_period = BillingPeriod(scheduled.get("billingPeriod", current.billing_period))
    scheduled_at = queries.utc(current.scheduled_at) or queries.utc(current.current_period_end)
    trial_end = queries.utc(current.trial_end)
    in_trial = current.status is SubscriptionStatus.IN_TRIAL and trial_end is not None

    # The current plan's monthly price in its own billing period ranks the others.
    current_rank_price = prices.get(current.plan_pk)
    if current.billing_period is not period and all_prices is not None:
        current_rank_price = price_view(
            current_plan.pricing_type, all_prices.get(current.plan_pk), current.billing_period, texts
        )
    current_monthly = current_rank_price.monthly_minor if current_rank_price else 0

    states: dict[int, PlanState] = {}
    for plan in plans:
        notice = ""
        if scheduled_plan_pk == plan.pk and scheduled_period is period and scheduled:
            states[plan.pk] = PlanState(
                ButtonView(
                    fill(texts["scheduled"], date=format_date(scheduled_at)), "scheduled", disabled=True
                ),
                cancel_scheduled=True,
            )
            continue
        if plan.pk == current.plan_pk:
            if in_trial and trial_end is not None:
                left = days_left(trial_end, now)
                notice = fill(texts["trial_days_left"], days=left) if left > 1 else texts["trial_last_day"]
            if scheduled and scheduled_plan_pk is not None and scheduled_plan_pk != plan.pk:
                target = by_pk.get(scheduled_plan_pk)
                notice = fill(
                    texts["scheduled_away"],
                    plan=target.name if target else str(scheduled.get("planId", "")),
                    date=format_date(scheduled_at),
                )
            if current.billing_period is period:
                states[plan.pk] = PlanState(
                    ButtonView(texts["current_plan"], "current", disabled=True), notice
                )
            elif plan.pricing_type is PricingType.PAID:
                key = "switch_to_annual" if period is BillingPeriod.ANNUALLY else "switch_to_monthly"
                states[plan.pk] = PlanState(ButtonView(texts[key], "switch_period", primary=True), notice)
            else:  # a free or custom plan has no billing period to switch
                states[plan.pk] = PlanState(
                    ButtonView(texts["current_plan"], "current", disabled=True), notice
                )
            continue
        if plan.pricing_type is PricingType.CUSTOM:
            states[plan.pk] = PlanState(ButtonView(texts["contact_us"], "contact"))
            continue
        kind = (change_types or {}).get(plan.pk)
        # A custom contract's price is not in the catalog, so the preview cannot rank it.
        if kind in ("UPGRADE", "DOWNGRADE") and current_plan.pricing_type is not PricingType.CUSTOM:
            states[plan.pk] = PlanState(
                ButtonView(texts["upgrade"], "upgrade", primary=True)
                if kind == "UPGRADE"
                else ButtonView(texts["downgrade"], "downgrade")
            )
            continue
        target_price = prices.get(plan.pk)
        target_monthly = target_price.monthly_minor if target_price else 0
        if target_monthly != current_monthly:
            upgrade = target_monthly > current_monthly
        else:
            upgrade = plan.display_order >= current_plan.display_order
        if current_plan.pricing_type is PricingType.CUSTOM:
            upgrade = False  # leaving a custom contract is never an upgrade
        states[plan.pk] = PlanState(
            ButtonView(texts["upgrade"], "upgrade", primary=True)
            if upgrade
            else ButtonView(texts["downgrade"], "downgrade")
        )
    return states


# ---- paywall ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddonView:
    id: str
    name: str
    description: str | None
    price: PriceView


@dataclass(frozen=True, slots=True)
class PlanCard:
    id: str
    name: str
    description: str | None
    recommended: bool
    price: PriceView
    parent_name: str | None
    features: list[str]
    addons: list[AddonView]
    state: PlanState
    pricing_type: str


@dataclass(slots=True)
class PaywallView:
    product_id: str
    product_name: str
    period: BillingPeriod
    periods: list[BillingPeriod]
    saving_percent: int
    cards: list[PlanCard] = field(default_factory=list)
    subscription_id: str | None = None  # the customer's live subscription of the product


async def paywall_view(
    session: AsyncSession,
    catalog: queries.Catalog,
    *,
    requested_period: BillingPeriod | None,
    customer_pk: int | None,
    texts: Mapping[str, str],
    now: dt.datetime,
    change_types: Callable[[list[Plan], BillingPeriod], Awaitable[Mapping[int, str]]] | None = None,
) -> PaywallView:
    available: set[BillingPeriod] = set()
    for plan in catalog.plans:
        available |= periods_of(catalog.prices.get(plan.pk))
    periods = [p for p in (BillingPeriod.MONTHLY, BillingPeriod.ANNUALLY) if p in available]
    subscriptions = None
    if customer_pk is not None:
        subscriptions = await queries.customer_subscriptions(session, customer_pk, catalog.product.pk)
        if requested_period is None and subscriptions:
            requested_period = subscriptions[0].billing_period  # open on the period they pay
    period: BillingPeriod = BillingPeriod.MONTHLY
    if requested_period is not None and requested_period in periods:
        period = requested_period
    elif periods:
        period = periods[0]
    prices = {
        p.pk: price_view(p.pricing_type, catalog.prices.get(p.pk), period, texts) for p in catalog.plans
    }
    states = await customer_plan_states(
        session,
        customer_pk=customer_pk,
        product_pk=catalog.product.pk,
        plans=catalog.plans,
        prices=prices,
        period=period,
        texts=texts,
        now=now,
        all_prices=catalog.prices,
        subscriptions=subscriptions,
        change_types=await change_types(catalog.plans, period) if change_types and subscriptions else None,
    )
    by_pk = {p.pk: p for p in catalog.plans} | catalog.parents
    cards = []
    for plan in catalog.plans:
        parent = by_pk.get(plan.parent_plan_pk) if plan.parent_plan_pk else None
        addons = [
            AddonView(
                id=a.ref,
                name=a.name,
                description=a.description,
                price=price_view(a.pricing_type, catalog.addon_prices.get(a.pk), period, texts),
            )
            for a in sorted(plan.addons, key=lambda a: (a.display_order, a.pk))
            if a.status.value == "PUBLISHED"
        ]
        cards.append(
            PlanCard(
                id=plan.ref,
                name=plan.name,
                description=plan.description,
                recommended=plan.recommended,
                price=prices[plan.pk],
                parent_name=parent.name if parent else None,
                features=[entitlement_text(e, texts) for e in own_entitlements(plan, parent)],
                addons=addons,
                state=states[plan.pk],
                pricing_type=plan.pricing_type.value,
            )
        )
    return PaywallView(
        product_id=catalog.product.ref,
        product_name=catalog.product.name,
        period=period,
        periods=periods,
        saving_percent=saving_percent(catalog.prices.get(p.pk) for p in catalog.plans),
        cards=cards,
        subscription_id=subscriptions[0].ref if subscriptions else None,
    )


# ---- portal -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageView:
    feature: str
    used: int
    limit: int | None  # None = unlimited
    text: str
    percent: int
    resets_on: str


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: str
    product_id: str
    product_name: str
    plan_name: str
    billing_period: str
    status: str
    status_label: str
    dates: list[str]
    addons: list[str]
    usage: list[UsageView]
    price: PriceView | None
    has_scheduled_change: bool = False
    ends_on: str = ""  # set once a cancellation is pending
    period_end: str = ""


_STATUS_LABELS = {
    SubscriptionStatus.NOT_STARTED: "Not started",
    SubscriptionStatus.IN_TRIAL: "Trial",
    SubscriptionStatus.ACTIVE: "Active",
    SubscriptionStatus.PAYMENT_PENDING: "Payment pending",
    SubscriptionStatus.CANCELED: "Canceled",
    SubscriptionStatus.EXPIRED: "Expired",
}


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month0 = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day)


def reset_date(
    reset: ResetPeriod | None, window_start: dt.datetime | None, period_end: dt.datetime | None
) -> dt.datetime | None:
    if reset is None:
        return None
    if reset is ResetPeriod.BILLING_PERIOD:
        return period_end
    if window_start is None:
        return None
    if reset is ResetPeriod.DAY:
        return window_start + dt.timedelta(days=1)
    if reset is ResetPeriod.WEEK:
        return window_start + dt.timedelta(days=7)
    return _add_months(window_start, 12 if reset is ResetPeriod.YEAR else 1)


def effective_entitlements(
    plan: Plan, parents: Mapping[int, Plan], addons: Iterable[tuple[Addon, int]]
) -> dict[int, Entitlement | tuple[Entitlement, int]]:
    """Feature pk -> the granting entitlement: the plan's (over its parents'), add-ons adding limits."""
    chain: list[Plan] = []
    cursor: Plan | None = plan
    while cursor is not None and cursor not in chain and len(chain) < 20:
        chain.append(cursor)
        cursor = parents.get(cursor.parent_plan_pk) if cursor.parent_plan_pk else None
    grants: dict[int, Entitlement | tuple[Entitlement, int]] = {}
    for owner in reversed(chain):  # the plan itself last, so it overrides its ancestors
        for e in owner.entitlements:
            grants[e.feature_pk] = e
    for addon, quantity in addons:
        for e in addon.entitlements:
            base = grants.get(e.feature_pk)
            extra = 0 if e.unlimited else (e.usage_limit or 0) * quantity
            if base is None:
                grants[e.feature_pk] = (e, extra)
            else:
                entitlement = base[0] if isinstance(base, tuple) else base
                added = base[1] if isinstance(base, tuple) else 0
                grants[e.feature_pk] = (entitlement, added + extra) if not e.unlimited else (e, 0)
    return grants


def usage_views(
    grants: Mapping[int, Entitlement | tuple[Entitlement, int]],
    counters: Mapping[int, UsageCounter],
    period_end: dt.datetime | None,
    texts: Mapping[str, str],
) -> list[UsageView]:
    result = []
    for value in grants.values():
        entitlement, added = value if isinstance(value, tuple) else (value, 0)
        feature = entitlement.feature
        if feature.feature_type is not FeatureType.METERED:
            continue
        counter = counters.get(feature.pk)
        used = counter.value if counter else 0
        window_start = queries.utc(counter.window_start) if counter else None
        if entitlement.unlimited:
            limit: int | None = None
        elif isinstance(value, tuple) and value[0].addon_pk is not None and value[0].plan_pk is None:
            limit = added  # granted by add-ons only
        else:
            limit = (entitlement.usage_limit or 0) + added
        unit = (
            (feature.unit_singular if limit == 1 else feature.unit_plural)
            or feature.unit_plural
            or feature.name.lower()
        )
        text = fill(
            texts["of"],
            used=f"{used:,}",
            limit=f"{limit:,}" if limit is not None else texts["unlimited"].lower(),
            unit=unit,
        )
        percent = 0 if not limit else min(100, round(100 * used / limit))
        resets = None
        if feature.meter_type is MeterType.INCREMENTAL:
            resets = reset_date(entitlement.reset_period, window_start, period_end)
        result.append(
            UsageView(
                feature=feature.name,
                used=used,
                limit=limit,
                text=text,
                percent=percent,
                resets_on=fill(texts["resets_on"], date=format_date(resets)) if resets else "",
            )
        )
    return result


async def portal_view(
    session: AsyncSession,
    *,
    customer_pk: int,
    product_ref: str | None,
    texts: Mapping[str, str],
    now: dt.datetime,
) -> list[SubscriptionView]:
    subscriptions = await queries.customer_subscriptions(session, customer_pk, details=True)
    if product_ref:
        subscriptions = [s for s in subscriptions if s.plan.product.ref == product_ref]
    if not subscriptions:
        return []
    plan_pks = {s.plan_pk for s in subscriptions}
    # Parent chains for inherited entitlements, resolved in a few batched reads.
    plans: dict[int, Plan] = {s.plan_pk: s.plan for s in subscriptions}
    wanted = {p.parent_plan_pk for p in plans.values() if p.parent_plan_pk} - plan_pks
    for _ in range(10):
        if not wanted:
            break
        found = await queries.plans_with_entitlements(session, sorted(wanted))
        plans |= found
        wanted = {p.parent_plan_pk for p in found.values() if p.parent_plan_pk} - plans.keys()
    addon_rows = [a for s in subscriptions for a in s.addons]
    addons = await queries.addons_with_entitlements(session, sorted({a.addon_pk for a in addon_rows}))
    # Each subscription is shown at the price version it bought, not the catalog's newest.
    versions = await queries.price_versions(
        session, sorted({s.price_version_pk for s in subscriptions if s.price_version_pk})
    )
    counters = await queries.usage_counters(session, customer_pk)
    scheduled_names = {p.pk: p.name for p in plans.values()}
    views = []
    for sub in subscriptions:
        period_end = queries.utc(sub.current_period_end)
        dates = []
        if sub.status is SubscriptionStatus.IN_TRIAL and sub.trial_end:
            dates.append(fill(texts["trial_ends_on"], date=format_date(queries.utc(sub.trial_end))))
        if sub.cancel_at:
            dates.append(fill(texts["ends_on"], date=format_date(queries.utc(sub.cancel_at))))
        elif sub.status is not SubscriptionStatus.IN_TRIAL:
            dates.append(fill(texts["renews_on"], date=format_date(period_end)))
        if sub.scheduled_change and sub.scheduled_change.get("planPk") is not None:
            target = int(sub.scheduled_change["planPk"])
            dates.append(
                fill(
                    texts["scheduled_away"],
                    plan=scheduled_names.get(target, str(sub.scheduled_change.get("planId", ""))),
                    date=format_date(queries.utc(sub.scheduled_at) or period_end),
                )
            )
        sub_addons = [(addons[a.addon_pk], a.quantity) for a in sub.addons if a.addon_pk in addons]
        grants = effective_entitlements(sub.plan, plans, sub_addons)
        views.append(
            SubscriptionView(
                id=sub.ref,
                product_id=sub.plan.product.ref,
                product_name=sub.plan.product.name,
                plan_name=sub.plan.name,
                billing_period=texts[PERIOD_SLUG[sub.billing_period]],
                status=sub.status.value,
                status_label=_STATUS_LABELS[sub.status],
                dates=dates,
                addons=[f"{a.name} × {q}" if q > 1 else a.name for a, q in sub_addons],
                usage=usage_views(grants, counters, period_end, texts),
                price=price_view(
                    sub.plan.pricing_type,
                    versions.get(sub.price_version_pk) if sub.price_version_pk else None,
                    sub.billing_period,
                    texts,
                ),
                has_scheduled_change=sub.scheduled_change is not None,
                ends_on=format_date(queries.utc(sub.cancel_at)) if sub.cancel_at else "",
                period_end=format_date(
                    queries.utc(sub.trial_end)
                    if sub.status is SubscriptionStatus.IN_TRIAL and sub.trial_end
                    else period_end
                ),
            )
        )
    return views
