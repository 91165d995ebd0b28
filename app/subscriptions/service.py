"""Subscriptions: provisioning, changes, cancellation, scheduled changes and price previews.

Rules in one place:

- One live subscription per customer per product. Provisioning a plan of a product the
  customer already subscribes to is a *change* of that subscription (same id).
- A change is an upgrade when the new configuration's recurring price, normalised to a
  month, is higher (or, both free, the new plan's display order is higher or equal): it takes
  effect at once. A downgrade or a billing-period change is stored as `scheduled_change` for
  the end of the current period (cancel it with DELETE .../scheduled-change). Changes during
  a trial take effect at once and end the trial.
- One trial per customer per product; no trial for customers who already paid for the
  product (a subscription of it activated on a PAID plan). `trialOverride` can shorten,
  lengthen or disable the plan's trial.
- Coupon changes apply at once. Add-on entitlements add to the plan's (aggregation.py).
- Payment: no money is collected yet, so PAID subscriptions start ACTIVE (or IN_TRIAL). The
  checkout work plugs a `PaymentGate` in: when it says payment is required, a new
  subscription starts PAYMENT_PENDING with `activated_at` NULL and grants nothing until
  `activate_subscription` is called.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal, Protocol

import msgspec
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import (
    Addon,
    BillingModel,
    BillingPeriod,
    CatalogStatus,
    Charge,
    Coupon,
    DiscountDuration,
    Feature,
    Plan,
    PlanStatus,
    PriceVersion,
    PricingType,
    Product,
    TrialEndBehavior,
    plan_addons,
)
from app.core.errors import Conflict, InvalidRequest, TollgateError, Unprocessable, not_found
from app.core.outbox import record_change
from app.core.pagination import DEFAULT_LIMIT, Page, paginate
from app.customers.models import Customer
from app.db import utcnow
from app.subscriptions import pricing
from app.subscriptions.entitlements import rematerialize_customers
from app.subscriptions.lifecycle import LIVE_STATUSES, advance, state_of, store_state, sync_addon_rows
from app.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionStatus
from app.subscriptions.periods import add_months, billing_period_window
from app.subscriptions.schemas import (
    AddonInput,
    AddonOut,
    CancelRequest,
    LineItem,
    PreviewResult,
    ProvisionRequest,
    ProvisionResult,
    ScheduledChangeOut,
    SubscriptionOut,
    TrialOverride,
    UnitQuantityInput,
    UnitQuantityOut,
    UpdateRequest,
)
from app.subscriptions.sql import pairs as _pairs

S = SubscriptionStatus
ChangeType = Literal["NEW", "UPGRADE", "DOWNGRADE", "BILLING_PERIOD_CHANGE", "NO_CHANGE"]


class PaymentGate(Protocol):
    """Decides whether a new subscription must be paid before it starts (checkout hook)."""

    async def requires_payment(self, session: AsyncSession, customer: Customer, config: Config) -> bool: ...


def _error(cls: type[TollgateError], message: str, code: str, param: str | None = None) -> TollgateError:
    return cls(message, code=code, param=param)


def _not_found(entity: str, ref: str, param: str) -> TollgateError:
    error = not_found(entity, ref)
    error.param = param
    return error


# --- configuration: what a subscription is made of ----------------------------------------


# A plan with its price version and that version's charges, as a caller already read them.
Offer = tuple[Plan, int | None, Sequence[Charge]]


@dataclasses.dataclass
class PricedAddon:
    addon: Addon
    quantity: int
    price_version_pk: int | None
    charges: list[Charge]


@dataclasses.dataclass
class Config:
    plan: Plan
    billing_period: BillingPeriod
    price_version_pk: int | None
    charges: list[Charge]
    addons: list[PricedAddon]
    unit_quantities: dict[str, int]
    coupon: Coupon | None
    currency: str | None
    feature_refs: dict[int, str]  # feature pk -> id, for charges

    def addon_tuples(self) -> tuple[tuple[int, int, int | None], ...]:
        return tuple((a.addon.pk, a.quantity, a.price_version_pk) for a in self.addons)

    def same_as(self, other: Config) -> bool:
        return (
            self.plan.pk == other.plan.pk
            and self.billing_period == other.billing_period
            # Price versions are left out: staying on a plan is not a change because it was repriced.
            and sorted(a[:2] for a in self.addon_tuples()) == sorted(a[:2] for a in other.addon_tuples())
            and self.unit_quantities == other.unit_quantities
        )


@dataclasses.dataclass
class Priced:
    recurring_total: int  # one period, before the coupon, usage-based excluded
    lines: list[LineItem]

    def monthly(self, period: BillingPeriod) -> Fraction:
        return pricing.monthly(self.recurring_total, period)


async def _price_version(
    session: AsyncSession,
    *,
    plan_pk: int | None = None,
    addon_pk: int | None = None,
    version_pk: int | None = None,
) -> tuple[int | None, list[Charge]]:
    """A price version's charges: the given version, else the latest (highest `version`)."""
    query = select(PriceVersion.pk)
    if version_pk is not None:
        query = query.where(PriceVersion.pk == version_pk)
    elif plan_pk is not None:
        query = query.where(PriceVersion.plan_pk == plan_pk).order_by(PriceVersion.version.desc()).limit(1)
    else:
        query = query.where(PriceVersion.addon_pk == addon_pk).order_by(PriceVersion.version.desc()).limit(1)
    pv_pk = await session.scalar(query)
    if pv_pk is None:
        return None, []
    charges = list(
        (
            await session.scalars(select(Charge).where(Charge.price_version_pk == pv_pk).order_by(Charge.pk))
        ).all()
    )
    return pv_pk, charges


def _for_period(charges: Sequence[Charge], period: BillingPeriod) -> list[Charge]:
    return [c for c in charges if c.billing_period == period]


def _pick_currency(charges: Sequence[Charge], customer: Customer | None, *, param: str) -> str | None:
    currencies = {c.currency.lower() for c in charges}
    if not currencies:
        return None
    if customer is not None and customer.currency:
        wanted = customer.currency.lower()
        if wanted not in currencies:
            raise _error(
                Unprocessable,
                f"The customer pays in {wanted.upper()} but this is priced in {', '.join(sorted(currencies)).upper()}.",
                "currency_mismatch",
                param,
            )
        return wanted
    return sorted(currencies)[0]


async def _plan_ancestors(session: AsyncSession, plan: Plan) -> list[int]:
    chain: list[int] = [plan.pk]
    parent = plan.parent_plan_pk
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = await session.scalar(select(Plan.parent_plan_pk).where(Plan.pk == parent))
    return chain


async def build_config(
    session: AsyncSession,
    environment_pk: int,
    customer: Customer,
    *,
    plan_ref: str,
    billing_period: BillingPeriod,
    addons: Sequence[AddonInput],
    unit_quantities: Sequence[UnitQuantityInput],
    coupon_ref: str | None,
    plan_version_pk: int | None = None,
    addon_version_pks: dict[int, int | None] | None = None,
    require_published: bool = True,
    validate: bool = True,
    loaded: Offer | None = None,
) -> Config:
    """Resolve and validate a requested configuration (plan, period, add-ons, quantities, coupon).

    `validate=False` re-reads a stored configuration leniently (the catalog may have moved on).
    `loaded`: the plan with the price version to use and its charges, already read by the caller.
    """
    if loaded is not None:
        plan, pv_pk, all_charges = loaded[0], loaded[1], list(loaded[2])
    else:
        found = await session.scalar(
            select(Plan).where(Plan.environment_pk == environment_pk, Plan.ref == plan_ref)
        )
        if found is None:
            raise _not_found("plan", plan_ref, "planId")
        plan = found
        pv_pk, all_charges = await _price_version(session, plan_pk=plan.pk, version_pk=plan_version_pk)
    if require_published and plan.status != PlanStatus.PUBLISHED:
        raise _error(Unprocessable, f"Plan '{plan_ref}' is not published.", "plan_not_published", "planId")
    charges = _for_period(all_charges, billing_period)
    if validate and plan.pricing_type == PricingType.PAID and not charges:
        raise _error(
            InvalidRequest,
            f"Plan '{plan_ref}' has no {billing_period.value} price.",
            "invalid_billing_period",
            "billingPeriod",
        )
    currency = _pick_currency(charges, customer if validate else None, param="planId")
    if currency is not None:
        charges = [c for c in charges if c.currency.lower() == currency]

    feature_pks = {c.feature_pk for c in charges if c.feature_pk is not None}
    feature_refs: dict[int, str] = {}
    if feature_pks:
        feature_refs = _pairs(
            await session.execute(select(Feature.pk, Feature.ref).where(Feature.pk.in_(feature_pks)))
        )

    # Unit quantities: every PER_UNIT / TIERED charge needs one (default: its minimum or 1).
    requested: dict[str, tuple[int, int]] = {}
    if unit_quantities:
        known = set(
            (
                await session.scalars(
                    select(Feature.ref).where(
                        Feature.environment_pk == environment_pk,
                        Feature.ref.in_({u.feature_id for u in unit_quantities}),
                    )
                )
            ).all()
        )
        for index, item in enumerate(unit_quantities):
            if item.feature_id not in known:
                raise _not_found("feature", item.feature_id, f"unitQuantities[{index}].featureId")
            requested[item.feature_id] = (item.quantity, index)
    quantities: dict[str, int] = {}
    for charge in charges:
        if (
            charge.billing_model not in (BillingModel.PER_UNIT, BillingModel.TIERED)
            or charge.feature_pk is None
        ):
            continue
        ref = feature_refs[charge.feature_pk]
        quantity, index = requested.get(ref, (charge.min_quantity or 1, None))
        param = f"unitQuantities[{index}].quantity" if index is not None else "unitQuantities"
        low, high = max(1, charge.min_quantity or 1), charge.max_quantity
        if validate and (quantity < low or (high is not None and quantity > high)):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            raise _error(InvalidRequest, f"Quantity of '{ref}' must be {bounds}.", "invalid_quantity", param)
        quantities[ref] = quantity

    priced_addons: list[PricedAddon] = []
    if addons:
        refs = [a.addon_id for a in addons]
        rows = {
            a.ref: a
            for a in await session.scalars(
                select(Addon).where(Addon.environment_pk == environment_pk, Addon.ref.in_(refs))
            )
        }
        compatible = set(
            (
                await session.scalars(
                    select(plan_addons.c.addon_pk).where(
                        plan_addons.c.plan_pk.in_(await _plan_ancestors(session, plan))
                    )
                )
            ).all()
        )
        seen: set[str] = set()
        for index, item in enumerate(addons):
            addon = rows.get(item.addon_id)
            if addon is None:
                raise _not_found("addon", item.addon_id, f"addons[{index}].addonId")
            if item.addon_id in seen:
                raise _error(
                    InvalidRequest,
                    f"Add-on '{item.addon_id}' is listed twice.",
                    "duplicate_addon",
                    f"addons[{index}]",
                )
            seen.add(item.addon_id)
            if validate and (addon.pk not in compatible or addon.product_pk != plan.product_pk):
                raise _error(
                    Unprocessable,
                    f"Add-on '{item.addon_id}' is not available with plan '{plan_ref}'.",
                    "addon_not_compatible",
                    f"addons[{index}].addonId",
                )
            if item.quantity < 1:
                raise _error(
                    InvalidRequest,
                    "Add-on quantities are at least 1.",
                    "invalid_quantity",
                    f"addons[{index}].quantity",
                )
            if validate and addon.max_quantity is not None and item.quantity > addon.max_quantity:
                raise _error(
                    Unprocessable,
                    f"At most {addon.max_quantity} of add-on '{item.addon_id}'.",
                    "addon_quantity_exceeded",
                    f"addons[{index}].quantity",
                )
            version_pk = (addon_version_pks or {}).get(addon.pk)
            addon_pv, addon_charges = await _price_version(session, addon_pk=addon.pk, version_pk=version_pk)
            addon_charges = _for_period(addon_charges, billing_period)
            if addon_charges:
                if currency is None:
                    currency = _pick_currency(
                        addon_charges, customer if validate else None, param=f"addons[{index}].addonId"
                    )
                addon_charges = [c for c in addon_charges if c.currency.lower() == currency]
                if validate and not addon_charges:
                    raise _error(
                        Unprocessable,
                        f"Add-on '{item.addon_id}' has no price in {str(currency).upper()}.",
                        "currency_mismatch",
                        f"addons[{index}].addonId",
                    )
            elif validate and addon.pricing_type == PricingType.PAID:
                raise _error(
                    InvalidRequest,
                    f"Add-on '{item.addon_id}' has no {billing_period.value} price.",
                    "invalid_billing_period",
                    f"addons[{index}].addonId",
                )
            priced_addons.append(PricedAddon(addon, item.quantity, addon_pv, addon_charges))

    coupon: Coupon | None = None
    if coupon_ref is not None:
        coupon = await session.scalar(
            select(Coupon).where(
                Coupon.environment_pk == environment_pk,
                Coupon.ref == coupon_ref,
                Coupon.status == CatalogStatus.ACTIVE,
            )
        )
        if coupon is None:
            raise _not_found("coupon", coupon_ref, "couponId")
        if (
            coupon.amount_off is not None
            and coupon.currency
            and currency
            and coupon.currency.lower() != currency
        ):
            raise _error(
                Unprocessable,
                f"Coupon '{coupon_ref}' is an amount in {coupon.currency.upper()}; the price is in {currency.upper()}.",
                "currency_mismatch",
                "couponId",
            )
    return Config(
        plan, billing_period, pv_pk, charges, priced_addons, quantities, coupon, currency, feature_refs
    )


def price_config(config: Config) -> Priced:
    """One period's recurring lines of a configuration, before the coupon."""
    lines: list[LineItem] = []
    total = 0

    def add(kind: Any, name: str, charge: Charge, quantity: int) -> None:
        nonlocal total
        if charge.billing_model == BillingModel.USAGE_BASED:
            feature = config.feature_refs.get(charge.feature_pk or 0)
            lines.append(
                LineItem(
                    kind=kind,
                    description=f"{name} (usage, billed in arrears)",
                    amount=0,
                    quantity=0,
                    unit_amount=charge.amount,
                    billing_model=charge.billing_model.value,
                    feature_id=feature,
                    in_arrears=True,
                )
            )
            return
        amount = pricing.charge_total(
            charge.billing_model, charge.amount, quantity, charge.tiers_mode, charge.tiers
        )
        total += amount
        lines.append(
            LineItem(
                kind=kind,
                description=name,
                amount=amount,
                quantity=quantity,
                unit_amount=charge.amount if charge.billing_model != BillingModel.TIERED else None,
                billing_model=charge.billing_model.value,
                feature_id=config.feature_refs.get(charge.feature_pk) if charge.feature_pk else None,
            )
        )

    for charge in config.charges:
        quantity = 1
        if (
            charge.billing_model in (BillingModel.PER_UNIT, BillingModel.TIERED)
            and charge.feature_pk is not None
        ):
            quantity = config.unit_quantities.get(config.feature_refs[charge.feature_pk], 1)
        add("PLAN", config.plan.name, charge, quantity)
    for item in config.addons:
        for charge in item.charges:
            add("ADDON", item.addon.name, charge, item.quantity)
    return Priced(total, lines)


def coupon_discount(coupon: Coupon | None, total: int) -> int:
    if coupon is None:
        return 0
    return pricing.discount(total, percent_off_bp=coupon.percent_off_bp, amount_off=coupon.amount_off)


def coupon_applies(coupon: Coupon | None, start: dt.datetime, period_start: dt.datetime) -> bool:
    """ONCE: the first invoice only; REPEATING: periods starting within N months; FOREVER: always."""
    if coupon is None:
        return False
    if coupon.duration == DiscountDuration.FOREVER:
        return True
    if coupon.duration == DiscountDuration.ONCE:
        return period_start <= start
    return period_start < add_months(start, coupon.duration_in_months or 0)


def classify(old: Config, old_priced: Priced, new: Config, new_priced: Priced) -> ChangeType:
    if new.same_as(old):
        return "NO_CHANGE"
    if new.billing_period != old.billing_period:
        return "BILLING_PERIOD_CHANGE"  # waits for the period end, like a downgrade
    old_m, new_m = old_priced.monthly(old.billing_period), new_priced.monthly(new.billing_period)
    if new_m != old_m:
        return "UPGRADE" if new_m > old_m else "DOWNGRADE"
    if new_m == 0 and new.plan.pk != old.plan.pk:
        return "UPGRADE" if new.plan.display_order >= old.plan.display_order else "DOWNGRADE"
    return "UPGRADE"


# --- loading ------------------------------------------------------------------------------


async def _customer(
    session: AsyncSession, environment_pk: int, ref: str, *, param: str = "customerId", lock: bool = False
) -> Customer:
    query = select(Customer).where(Customer.environment_pk == environment_pk, Customer.ref == ref)
    # Provisioning locks the customer (PostgreSQL) so two concurrent requests cannot both
    # create "the" subscription of a product; SQLite has a single writer anyway.
    customer = await session.scalar(query.with_for_update() if lock else query)
    if customer is None:
        raise _not_found("customer", ref, param)
    return customer


async def _subscription(
    session: AsyncSession, environment_pk: int, ref: str, *, lock: bool = False
) -> Subscription:
    query = select(Subscription).where(Subscription.environment_pk == environment_pk, Subscription.ref == ref)
    sub = await session.scalar(query.with_for_update() if lock else query)
    if sub is None:
        raise not_found("subscription", ref)
    return sub


async def _addon_rows(session: AsyncSession, sub: Subscription) -> list[SubscriptionAddon]:
    return list(
        (
            await session.scalars(
                select(SubscriptionAddon)
                .where(SubscriptionAddon.subscription_pk == sub.pk)
                .order_by(SubscriptionAddon.pk)
            )
        ).all()
    )


async def _catch_up(session: AsyncSession, sub: Subscription, now: dt.datetime) -> None:
    """Persist time-driven transitions the worker has not applied yet, before acting on the row."""
    behavior = await session.scalar(select(Plan.trial_end_behavior).where(Plan.pk == sub.plan_pk))
    before = state_of(sub, await _addon_rows(session, sub))
    after = advance(before, behavior or TrialEndBehavior.CONVERT_TO_PAID, now)
    if store_state(sub, before, after):
        if after.addons != before.addons:
            await sync_addon_rows(session, sub, after.addons)
        ended = after.status in (S.CANCELED, S.EXPIRED)
        record_change(session, sub.environment_pk, "subscription", sub.pk, "canceled" if ended else "updated")
        await rematerialize_customers(session, [sub.customer_pk], now)


async def _config_of(
    session: AsyncSession,
    environment_pk: int,
    sub: Subscription,
    customer: Customer,
    *,
    offers: dict[int, Offer] | None = None,
) -> Config:
    """The subscription's current configuration, at the price versions it was sold at.

    `offers` (plan pk -> plan, price version, charges) already read save reading them again.
    """
    offer = (offers or {}).get(sub.plan_pk)
    if offer is not None and offer[1] != sub.price_version_pk:
        offer = None  # sold at an older price version: read that one
    plan_ref = offer[0].ref if offer else await session.scalar(select(Plan.ref).where(Plan.pk == sub.plan_pk))
    rows = await _addon_rows(session, sub)
    addon_refs = (
        _pairs(
            await session.execute(select(Addon.pk, Addon.ref).where(Addon.pk.in_([r.addon_pk for r in rows])))
        )
        if rows
        else {}
    )
    config = await build_config(
        session,
        environment_pk,
        customer,
        plan_ref=str(plan_ref),
        billing_period=sub.billing_period,
        addons=[AddonInput(addon_refs[r.addon_pk], r.quantity) for r in rows],
        unit_quantities=[UnitQuantityInput(k, int(v)) for k, v in (sub.unit_quantities or {}).items()],
        coupon_ref=None,
        plan_version_pk=sub.price_version_pk,
        addon_version_pks={r.addon_pk: r.price_version_pk for r in rows},
        require_published=False,
        validate=False,
        loaded=offer,
    )
    if sub.coupon_pk is not None:
        config.coupon = await session.scalar(select(Coupon).where(Coupon.pk == sub.coupon_pk))
    return config


async def _live_in_product(
    session: AsyncSession,
    customer_pk: int,
    product_pk: int,
    now: dt.datetime,
    *,
    waiting: bool | None = None,
) -> Subscription | None:
    subs = (
        await session.scalars(
            select(Subscription)
            .where(
                Subscription.customer_pk == customer_pk,
                Subscription.product_pk == product_pk,
                Subscription.status.in_(LIVE_STATUSES),
            )
            .order_by(Subscription.pk.desc())
        )
    ).all()
    for sub in subs:
        await _catch_up(session, sub, now)
    live = [s for s in subs if s.status in LIVE_STATUSES and (waiting is None or _waiting(s) == waiting)]
    # The one that grants comes first: an upgrade waiting for payment is not yet "current".
    live.sort(key=_waiting)
    return live[0] if live else None


def _waiting(sub: Subscription) -> bool:
    """Created to be paid first (Checkout) and not paid yet: it grants nothing."""
    return sub.status == S.PAYMENT_PENDING and sub.activated_at is None


async def _trial_eligible(session: AsyncSession, customer_pk: int, product_pk: int) -> bool:
    """One trial per customer per product, and none for customers who paid for the product."""
    had = await session.scalar(
        select(Subscription.pk)
        .join(Plan, Plan.pk == Subscription.plan_pk)
        .where(
            Subscription.customer_pk == customer_pk,
            Subscription.product_pk == product_pk,
            (Subscription.trial_end.is_not(None))
            | and_(Subscription.activated_at.is_not(None), Plan.pricing_type == PricingType.PAID),
        )
        .limit(1)
    )
    return had is None


def _trial_days(config: Config, override: Any) -> int:
    if config.plan.pricing_type != PricingType.PAID:
        return 0
    if override is not None and override.disabled:
        return 0
    if override is not None and override.duration_days is not None:
        if override.duration_days < 0:
            raise _error(
                InvalidRequest,
                "Trial days cannot be negative.",
                "invalid_trial",
                "trialOverride.durationDays",
            )
        return override.duration_days
    return config.plan.trial_days or 0


# --- rendering ----------------------------------------------------------------------------


async def render(session: AsyncSession, subs: Sequence[Subscription]) -> list[SubscriptionOut]:
    """Subscriptions as API bodies, with every referenced id loaded in a few IN queries."""
    if not subs:
        return []
    pks = [s.pk for s in subs]
    addon_rows: dict[int, list[SubscriptionAddon]] = {pk: [] for pk in pks}
    for row in await session.scalars(
        select(SubscriptionAddon)
        .where(SubscriptionAddon.subscription_pk.in_(pks))
        .order_by(SubscriptionAddon.pk)
    ):
        addon_rows[row.subscription_pk].append(row)

    async def refs(model: Any, keys: set[int]) -> dict[int, str]:
        keys = {k for k in keys if k is not None}
        if not keys:
            return {}
        return _pairs(await session.execute(select(model.pk, model.ref).where(model.pk.in_(keys))))

    customers = await refs(Customer, {s.customer_pk for s in subs})
    products = await refs(Product, {s.product_pk for s in subs})
    plans = await refs(
        Plan,
        {s.plan_pk for s in subs} | {int(s.scheduled_change["planPk"]) for s in subs if s.scheduled_change},
    )
    addons = await refs(Addon, {r.addon_pk for rows in addon_rows.values() for r in rows})
    coupons = await refs(Coupon, {s.coupon_pk for s in subs if s.coupon_pk})
    result = []
    for s in subs:
        scheduled = None
        if s.scheduled_change and s.scheduled_at:
            change = s.scheduled_change
            scheduled = ScheduledChangeOut(
                scheduled_at=s.scheduled_at,
                plan_id=plans.get(int(change["planPk"])) or str(change.get("planId", "")),
                billing_period=BillingPeriod(change["billingPeriod"]),
                addons=[AddonOut(a["addonId"], int(a["quantity"])) for a in change.get("addons", [])],
                unit_quantities=[
                    UnitQuantityOut(k, int(v)) for k, v in change.get("unitQuantities", {}).items()
                ],
            )
        result.append(
            SubscriptionOut(
                id=s.ref,
                customer_id=customers[s.customer_pk],
                product_id=products[s.product_pk],
                plan_id=plans[s.plan_pk],
                billing_period=s.billing_period,
                status=s.status,
                start_date=s.start_date,
                current_period_start=s.current_period_start,
                current_period_end=s.current_period_end,
                trial_end=s.trial_end,
                cancel_at=s.cancel_at,
                canceled_at=s.canceled_at,
                ended_at=s.ended_at,
                activated_at=s.activated_at,
                coupon_id=coupons.get(s.coupon_pk) if s.coupon_pk else None,
                addons=[AddonOut(addons[r.addon_pk], r.quantity) for r in addon_rows[s.pk]],
                unit_quantities=[UnitQuantityOut(k, int(v)) for k, v in (s.unit_quantities or {}).items()],
                scheduled_change=scheduled,
                metadata=s.metadata_ or {},
                created_at=s.created_at,
            )
        )
    return result


async def _render_one(session: AsyncSession, sub: Subscription) -> SubscriptionOut:
    await session.flush()
    return (await render(session, [sub]))[0]


# --- provisioning and changes -------------------------------------------------------------


def _scheduled_payload(config: Config) -> dict[str, Any]:
    return {
        "planPk": config.plan.pk,
        "planId": config.plan.ref,
        "billingPeriod": config.billing_period.value,
        "priceVersionPk": config.price_version_pk,
        "unitQuantities": dict(config.unit_quantities),
        "addons": [
            {
                "addonPk": a.addon.pk,
                "addonId": a.addon.ref,
                "quantity": a.quantity,
                "priceVersionPk": a.price_version_pk,
            }
            for a in config.addons
        ],
    }


async def _upgrade_trial_days(
    session: AsyncSession,
    sub: Subscription,
    old: Config,
    new: Config,
    kind: ChangeType,
    override: TrialOverride | None,
) -> int:
    """Trial days for an upgrade from a FREE plan to a PAID one (0 when none applies)."""
    if kind != "UPGRADE" or sub.status != S.ACTIVE or old.plan.pricing_type != PricingType.FREE:
        return 0
    days = _trial_days(new, override)
    if days and await _trial_eligible(session, sub.customer_pk, sub.product_pk):
        return days
    return 0


async def _apply_now(session: AsyncSession, sub: Subscription, config: Config) -> None:
    sub.plan_pk = config.plan.pk
    sub.price_version_pk = config.price_version_pk
    sub.billing_period = config.billing_period
    sub.unit_quantities = dict(config.unit_quantities)
    sub.scheduled_change = None
    sub.scheduled_at = None
    await sync_addon_rows(session, sub, config.addon_tuples())


async def _pays_first(
    session: AsyncSession,
    existing: Subscription,
    customer: Customer,
    new: Config,
    payment_gate: PaymentGate | None,
    trial_override: TrialOverride | None,
) -> bool:
    """Whether moving from a subscription nobody pays for (free, or a trial) to a paid plan
    must wait for payment. Then a new PAYMENT_PENDING subscription is created beside the
    current one, which keeps granting until the payment arrives and `activate_subscription`
    ends it; abandoning the payment page leaves the customer where they were."""
    if payment_gate is None or new.plan.pricing_type != PricingType.PAID:
        return False
    if existing.status == S.PAYMENT_PENDING:
        return False  # already waiting for payment: that subscription is changed instead
    old_plan = await session.get_one(Plan, existing.plan_pk)
    if old_plan.pricing_type == PricingType.PAID and existing.status != S.IN_TRIAL:
        return False  # a paying customer's upgrade is prorated on their next invoice
    if _trial_days(new, trial_override) and await _trial_eligible(session, customer.pk, existing.product_pk):
        return False  # the upgrade starts a trial (see `_upgrade_trial_days`), no payment yet
    return await payment_gate.requires_payment(session, customer, new)


async def _change(
    session: AsyncSession,
    sub: Subscription,
    customer: Customer,
    new: Config,
    now: dt.datetime,
    *,
    metadata: dict[str, Any] | None,
    coupon_given: bool,
    resume: bool = False,
    trial_override: TrialOverride | None = None,
) -> ProvisionResult:
    """Move a live subscription to `new` (see the module docstring for when it takes effect).

    `resume` (provisioning): asking for a product one already has means keeping it, so a
    pending cancellation and, when nothing else changes, a pending downgrade are dropped.
    """
    old = await _config_of(session, sub.environment_pk, sub, customer)
    kind = classify(old, price_config(old), new, price_config(new))
    if coupon_given:
        sub.coupon_pk = new.coupon.pk if new.coupon else None
    if metadata is not None:
        sub.metadata_ = metadata
    if resume and sub.cancel_at is not None:
        sub.cancel_at = None
        sub.canceled_at = None
    status: Literal["SUCCESS", "SCHEDULED"] = "SUCCESS"
    trial_days = await _upgrade_trial_days(session, sub, old, new, kind, trial_override)
    if trial_days:
        # A free customer moving to a paid plan gets its trial, as a new customer would.
        await _apply_now(session, sub, new)
        trial_end = now + dt.timedelta(days=trial_days)
        sub.status = S.IN_TRIAL
        sub.trial_end = trial_end
        sub.billing_anchor = trial_end
        sub.current_period_start, sub.current_period_end = now, trial_end
    elif sub.status == S.IN_TRIAL and kind != "NO_CHANGE":
        # Changing plans ends the trial: the new configuration starts a fresh period now.
        await _apply_now(session, sub, new)
        sub.trial_end = now
        sub.status = S.ACTIVE
        sub.activated_at = sub.activated_at or now
        sub.billing_anchor = now
        sub.current_period_start, sub.current_period_end = billing_period_window(now, new.billing_period, now)
    elif kind == "NO_CHANGE":
        if resume:
            sub.scheduled_change = None
            sub.scheduled_at = None
    elif kind == "UPGRADE":
        await _apply_now(session, sub, new)
    else:
        sub.scheduled_change = _scheduled_payload(new)
        sub.scheduled_at = sub.current_period_end
        status = "SCHEDULED"
    record_change(session, sub.environment_pk, "subscription", sub.pk, "updated")
    await rematerialize_customers(session, [sub.customer_pk], now)
    return ProvisionResult(status=status, subscription=await _render_one(session, sub))


async def provision_subscription(
    session: AsyncSession,
    environment_pk: int,
    request: ProvisionRequest,
    *,
    now: dt.datetime | None = None,
    payment_gate: PaymentGate | None = None,
) -> ProvisionResult:
    now = now or utcnow()
    customer = await _customer(session, environment_pk, request.customer_id, lock=True)
    config = await build_config(
        session,
        environment_pk,
        customer,
        plan_ref=request.plan_id,
        billing_period=request.billing_period,
        addons=request.addons,
        unit_quantities=request.unit_quantities,
        coupon_ref=request.coupon_id,
    )
    existing = await _live_in_product(session, customer.pk, config.plan.product_pk, now)
    if existing is not None and await _pays_first(
        session, existing, customer, config, payment_gate, request.trial_override
    ):
        # Asked again while an earlier upgrade waits for payment: that one is changed, not doubled.
        existing = await _live_in_product(session, customer.pk, config.plan.product_pk, now, waiting=True)
    if existing is not None:
        return await _change(
            session,
            existing,
            customer,
            config,
            now,
            metadata=request.metadata,
            coupon_given=request.coupon_id is not None,
            resume=True,
            trial_override=request.trial_override,
        )

    ref = request.subscription_id or f"sub_{uuid.uuid4().hex[:24]}"
    if not 1 <= len(ref) <= 100:
        raise _error(
            InvalidRequest, "subscriptionId must be 1 to 100 characters.", "invalid_id", "subscriptionId"
        )
    taken = await session.scalar(
        select(Subscription.pk).where(Subscription.environment_pk == environment_pk, Subscription.ref == ref)
    )
    if taken is not None:
        raise _error(
            Conflict, f"Subscription '{ref}' exists already.", "subscription_exists", "subscriptionId"
        )

    trial_days = _trial_days(config, request.trial_override)
    if trial_days and not await _trial_eligible(session, customer.pk, config.plan.product_pk):
        trial_days = 0
    sub = Subscription(
        environment_pk=environment_pk,
        ref=ref,
        customer_pk=customer.pk,
        product_pk=config.plan.product_pk,
        plan_pk=config.plan.pk,
        price_version_pk=config.price_version_pk,
        billing_period=config.billing_period,
        start_date=now,
        coupon_pk=config.coupon.pk if config.coupon else None,
        unit_quantities=dict(config.unit_quantities),
        metadata_=request.metadata or {},
    )
    if trial_days:
        trial_end = now + dt.timedelta(days=trial_days)
        sub.status = S.IN_TRIAL
        sub.trial_end = trial_end
        # The first paid period starts when the trial ends.
        sub.billing_anchor = trial_end
        sub.current_period_start, sub.current_period_end = now, trial_end
    else:
        needs_payment = (
            config.plan.pricing_type == PricingType.PAID
            and payment_gate is not None
            and await payment_gate.requires_payment(session, customer, config)
        )
        sub.status = S.PAYMENT_PENDING if needs_payment else S.ACTIVE
        sub.activated_at = None if needs_payment else now
        sub.billing_anchor = now
        sub.current_period_start, sub.current_period_end = billing_period_window(
            now, config.billing_period, now
        )
    if customer.currency is None and config.currency is not None:
        # Like Stripe, a customer pays every subscription in one currency: the first fixes it.
        customer.currency = config.currency
    session.add(sub)
    await session.flush()
    await sync_addon_rows(session, sub, config.addon_tuples())
    record_change(session, environment_pk, "subscription", sub.pk, "created")
    await rematerialize_customers(session, [customer.pk], now)
    return ProvisionResult(status="SUCCESS", subscription=await _render_one(session, sub))


async def activate_subscription(session: AsyncSession, sub: Subscription, now: dt.datetime) -> None:
    """For the checkout work: payment arrived, a PAYMENT_PENDING subscription starts now."""
    if sub.status != S.PAYMENT_PENDING:
        return
    first = sub.activated_at is None
    sub.status = S.ACTIVE
    sub.activated_at = sub.activated_at or now
    record_change(session, sub.environment_pk, "subscription", sub.pk, "updated")
    if first:
        # An upgrade that waited for payment (see `_pays_first`) replaces what the customer had.
        replaced = await session.scalars(
            select(Subscription).where(
                Subscription.customer_pk == sub.customer_pk,
                Subscription.product_pk == sub.product_pk,
                Subscription.pk != sub.pk,
                Subscription.status.in_(LIVE_STATUSES),
            )
        )
        for other in replaced.all():
            _end_now(session, other, now)
    await rematerialize_customers(session, [sub.customer_pk], now)


def _end_now(session: AsyncSession, sub: Subscription, now: dt.datetime) -> None:
    sub.status = S.CANCELED
    sub.canceled_at = sub.canceled_at or now
    sub.cancel_at = now
    sub.ended_at = now
    sub.scheduled_change = None
    sub.scheduled_at = None
    record_change(session, sub.environment_pk, "subscription", sub.pk, "canceled")


async def _live_subscription(
    session: AsyncSession, environment_pk: int, ref: str, now: dt.datetime
) -> Subscription:
    sub = await _subscription(session, environment_pk, ref, lock=True)
    await _catch_up(session, sub, now)
    if sub.status not in LIVE_STATUSES:
        raise _error(
            Conflict,
            f"Subscription '{ref}' is {sub.status.value}; it can no longer change.",
            "subscription_not_active",
        )
    return sub


async def update_subscription(
    session: AsyncSession,
    environment_pk: int,
    ref: str,
    request: UpdateRequest,
    *,
    now: dt.datetime | None = None,
) -> ProvisionResult:
    now = now or utcnow()
    sub = await _live_subscription(session, environment_pk, ref, now)
    customer = await session.get_one(Customer, sub.customer_pk)
    current = await _config_of(session, environment_pk, sub, customer)
    unset = msgspec.UNSET
    coupon_ref = None
    if request.coupon_id is not unset:
        coupon_ref = request.coupon_id
    config = await build_config(
        session,
        environment_pk,
        customer,
        plan_ref=current.plan.ref if request.plan_id is unset else request.plan_id,
        billing_period=current.billing_period if request.billing_period is unset else request.billing_period,
        addons=[AddonInput(a.addon.ref, a.quantity) for a in current.addons]
        if request.addons is unset
        else request.addons,
        unit_quantities=[UnitQuantityInput(k, v) for k, v in current.unit_quantities.items()]
        if request.unit_quantities is unset
        else request.unit_quantities,
        coupon_ref=coupon_ref if isinstance(coupon_ref, str) else None,
        # Unchanged parts stay on the versions they were sold at.
        plan_version_pk=sub.price_version_pk
        if request.plan_id is unset or request.plan_id == current.plan.ref
        else None,
        addon_version_pks={a.addon.pk: a.price_version_pk for a in current.addons},
        require_published=request.plan_id is not unset and request.plan_id != current.plan.ref,
    )
    if config.plan.product_pk != sub.product_pk:
        raise _error(
            Unprocessable,
            "A subscription can only move to plans of its own product.",
            "plan_not_in_product",
            "planId",
        )
    return await _change(
        session,
        sub,
        customer,
        config,
        now,
        metadata=None if request.metadata is unset else request.metadata,
        coupon_given=request.coupon_id is not unset,
    )


async def cancel_subscription(
    session: AsyncSession,
    environment_pk: int,
    ref: str,
    request: CancelRequest,
    *,
    now: dt.datetime | None = None,
) -> SubscriptionOut:
    now = now or utcnow()
    sub = await _live_subscription(session, environment_pk, ref, now)
    if request.cancellation_time == "IMMEDIATE" or sub.status in (S.NOT_STARTED, S.PAYMENT_PENDING):
        _end_now(session, sub, now)
    else:
        sub.canceled_at = now
        sub.scheduled_change = None
        sub.scheduled_at = None
        # A trial ends at its trial end, a paid period at its end.
        sub.cancel_at = (
            sub.trial_end if sub.status == S.IN_TRIAL and sub.trial_end else sub.current_period_end
        )
        record_change(session, environment_pk, "subscription", sub.pk, "updated")
    await rematerialize_customers(session, [sub.customer_pk], now)
    return await _render_one(session, sub)


async def cancel_scheduled_change(
    session: AsyncSession, environment_pk: int, ref: str, *, now: dt.datetime | None = None
) -> SubscriptionOut:
    now = now or utcnow()
    sub = await _live_subscription(session, environment_pk, ref, now)
    if sub.scheduled_change is None:
        raise _error(Conflict, f"Subscription '{ref}' has no scheduled change.", "no_scheduled_change")
    sub.scheduled_change = None
    sub.scheduled_at = None
    record_change(session, environment_pk, "subscription", sub.pk, "updated")
    await rematerialize_customers(session, [sub.customer_pk], now)
    return await _render_one(session, sub)


async def get_subscription(
    session: AsyncSession, environment_pk: int, ref: str, *, now: dt.datetime | None = None
) -> SubscriptionOut:
    sub = await _subscription(session, environment_pk, ref)
    # Show the subscription as it is now, even if the worker has not caught up yet.
    await _catch_up(session, sub, now or utcnow())
    return await _render_one(session, sub)


async def list_subscriptions(
    session: AsyncSession,
    environment_pk: int,
    *,
    customer_ref: str | None = None,
    status: SubscriptionStatus | None = None,
    limit: int = DEFAULT_LIMIT,
    starting_after: str | None = None,
) -> Page[SubscriptionOut]:
    query = select(Subscription).where(Subscription.environment_pk == environment_pk)
    if customer_ref is not None:
        customer_pk = await session.scalar(
            select(Customer.pk).where(Customer.environment_pk == environment_pk, Customer.ref == customer_ref)
        )
        if customer_pk is None:
            raise _not_found("customer", customer_ref, "customerId")
        query = query.where(Subscription.customer_pk == customer_pk)
    if status is not None:
        query = query.where(Subscription.status == status)
    rows, has_more = await paginate(
        session,
        query,
        Subscription,
        environment_pk=environment_pk,
        limit=limit,
        starting_after=starting_after,
        entity="subscription",
    )
    data = await render(session, rows)
    return Page(data=data, has_more=has_more, next_cursor=data[-1].id if has_more and data else None)


# --- preview ------------------------------------------------------------------------------


def _discount_line(coupon: Coupon, amount: int) -> LineItem:
    return LineItem(kind="DISCOUNT", description=coupon.name, amount=-amount)


async def change_types(
    session: AsyncSession,
    environment_pk: int,
    customer_ref: str,
    offers: Sequence[Offer],
    billing_period: BillingPeriod,
    *,
    now: dt.datetime | None = None,
) -> dict[int, ChangeType]:
    """For a whole price list at once: what provisioning each plan (no add-ons, default
    quantities) would be for this customer, as `preview_subscription` classifies it.

    `offers` are plans with their latest price version and charges, as the caller read them.
    The customer's current configuration is read once, not once per plan. Plans that cannot be
    sold in `billing_period` (or in the customer's currency) are left out.
    """
    now = now or utcnow()
    customer = await _customer(session, environment_pk, customer_ref)
    current: dict[int, tuple[Config, Priced] | None] = {}
    kinds: dict[int, ChangeType] = {}
    for plan, version_pk, charges in offers:
        try:
            new = await build_config(
                session,
                environment_pk,
                customer,
                plan_ref=plan.ref,
                billing_period=billing_period,
                addons=(),
                unit_quantities=(),
                coupon_ref=None,
                loaded=(plan, version_pk, charges),
            )
        except TollgateError:
            continue
        if plan.product_pk not in current:
            existing = await _live_in_product(session, customer.pk, plan.product_pk, now)
            old = (
                None
                if existing is None
                else await _config_of(
                    session, environment_pk, existing, customer, offers={o[0].pk: o for o in offers}
                )
            )
            current[plan.product_pk] = None if old is None else (old, price_config(old))
        old_priced = current[plan.product_pk]
        kinds[plan.pk] = "NEW" if old_priced is None else classify(*old_priced, new, price_config(new))
    return kinds


def _trial_preview(
    kind: ChangeType, new: Config, now: dt.datetime, trial_days: int, recurring: int, lines: list[Any]
) -> PreviewResult:
    """A trial starts now: nothing is due until it ends, then the recurring total."""
    trial_end = now + dt.timedelta(days=trial_days)
    return PreviewResult(
        change_type=kind,
        currency=new.currency,
        billing_period=new.billing_period,
        effective_at=now,
        amount_due_now=0,
        next_recurring_total=recurring,
        next_billing_date=trial_end,
        lines_due_now=[],
        recurring_lines=lines,
        trial_end=trial_end,
    )


async def preview_subscription(
    session: AsyncSession,
    environment_pk: int,
    request: ProvisionRequest,
    *,
    now: dt.datetime | None = None,
    payment_gate: PaymentGate | None = None,
) -> PreviewResult:
    """What provisioning `request` would cost: due now (prorated for a change, see
    pricing.prorate) and the next recurring total, with the coupon applied. Writes nothing
    (time-driven transitions it catches up on are harmless to persist).

    With the provisioning's `payment_gate`, an upgrade that must be paid first (see
    `_pays_first`) is previewed as what it will be: a new subscription from now
    (`paymentFirst`)."""
    now = now or utcnow()
    customer = await _customer(session, environment_pk, request.customer_id)
    new = await build_config(
        session,
        environment_pk,
        customer,
        plan_ref=request.plan_id,
        billing_period=request.billing_period,
        addons=request.addons,
        unit_quantities=request.unit_quantities,
        coupon_ref=request.coupon_id,
    )
    new_priced = price_config(new)
    existing = await _live_in_product(session, customer.pk, new.plan.product_pk, now)
    payment_first = existing is not None and await _pays_first(
        session, existing, customer, new, payment_gate, request.trial_override
    )

    if existing is None or payment_first:
        trial_days = _trial_days(new, request.trial_override)
        if trial_days and not await _trial_eligible(session, customer.pk, new.plan.product_pk):
            trial_days = 0
        off = coupon_discount(new.coupon, new_priced.recurring_total)
        recurring = new_priced.recurring_total - off
        lines = [*new_priced.lines, *([_discount_line(new.coupon, off)] if new.coupon and off else [])]
        if trial_days:
            return _trial_preview("NEW", new, now, trial_days, recurring, lines)
        _, end = billing_period_window(now, new.billing_period, now)
        later = new_priced.recurring_total - (off if coupon_applies(new.coupon, now, end) else 0)
        return PreviewResult(
            change_type="UPGRADE" if payment_first else "NEW",
            payment_first=payment_first,
            currency=new.currency,
            billing_period=new.billing_period,
            effective_at=now,
            amount_due_now=recurring,
            next_recurring_total=later,
            next_billing_date=end,
            lines_due_now=lines,
            recurring_lines=[
                *new_priced.lines,
                *(
                    [_discount_line(new.coupon, off)]
                    if new.coupon and off and later != new_priced.recurring_total
                    else []
                ),
            ],
        )

    old = await _config_of(session, environment_pk, existing, customer)
    if request.coupon_id is None:
        new.coupon = old.coupon
    old_priced = price_config(old)
    kind = classify(old, old_priced, new, new_priced)
    new_off = coupon_discount(new.coupon, new_priced.recurring_total)
    new_net = new_priced.recurring_total - new_off
    recurring_lines = [
        *new_priced.lines,
        *([_discount_line(new.coupon, new_off)] if new.coupon and new_off else []),
    ]
    trial_days = await _upgrade_trial_days(session, existing, old, new, kind, request.trial_override)
    if trial_days:
        return _trial_preview(kind, new, now, trial_days, new_net, recurring_lines)
    if existing.status == S.IN_TRIAL and kind != "NO_CHANGE":
        # The trial ends and a full new period starts now.
        _, end = billing_period_window(now, new.billing_period, now)
        return PreviewResult(
            change_type=kind,
            currency=new.currency,
            billing_period=new.billing_period,
            effective_at=now,
            amount_due_now=new_net,
            next_recurring_total=new_net,
            next_billing_date=end,
            lines_due_now=recurring_lines,
            recurring_lines=recurring_lines,
        )
    # Coupon durations count from the subscription's start (ONCE: its first period only).
    next_applies = coupon_applies(new.coupon, existing.start_date, existing.current_period_end)
    next_total = new_net if next_applies else new_priced.recurring_total
    if not next_applies:
        recurring_lines = list(new_priced.lines)
    if kind != "UPGRADE":
        effective = now if kind == "NO_CHANGE" else existing.current_period_end
        return PreviewResult(
            change_type=kind,
            currency=new.currency,
            billing_period=new.billing_period,
            effective_at=effective,
            amount_due_now=0,
            next_recurring_total=next_total,
            next_billing_date=existing.current_period_end,
            lines_due_now=[],
            recurring_lines=recurring_lines,
        )
    now_applies = coupon_applies(new.coupon, existing.start_date, existing.current_period_start)
    old_now_applies = coupon_applies(old.coupon, existing.start_date, existing.current_period_start)
    old_net = old_priced.recurring_total - (
        coupon_discount(old.coupon, old_priced.recurring_total) if old_now_applies else 0
    )
    credit, charge, net = pricing.prorate(
        old_net,
        new_net if now_applies else new_priced.recurring_total,
        existing.current_period_start,
        existing.current_period_end,
        now,
    )
    due_lines = [
        LineItem(kind="PRORATION_CREDIT", description=f"Unused time on {old.plan.name}", amount=-credit),
        LineItem(kind="PRORATION_CHARGE", description=f"Remaining time on {new.plan.name}", amount=charge),
    ]
    return PreviewResult(
        change_type=kind,
        currency=new.currency,
        billing_period=new.billing_period,
        effective_at=now,
        amount_due_now=net,
        next_recurring_total=next_total,
        next_billing_date=existing.current_period_end,
        lines_due_now=due_lines,
        recurring_lines=recurring_lines,
    )


__all__ = [
    "Config",
    "PaymentGate",
    "activate_subscription",
    "cancel_scheduled_change",
    "cancel_subscription",
    "change_types",
    "get_subscription",
    "list_subscriptions",
    "preview_subscription",
    "provision_subscription",
    "update_subscription",
]
