"""Read-only SQL for the widgets: the published catalog of one product and a customer's rows.

Widgets never write. Every query here is scoped to one environment primary key, and loads
what the templates need eagerly (the models' relationships are `lazy="raise"`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload, selectinload

from app.catalog.models import (
    Addon,
    Charge,
    Entitlement,
    Plan,
    PlanStatus,
    PriceVersion,
    Product,
)
from app.customers.models import Customer
from app.environments.models import Environment
from app.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionStatus, UsageCounter
from app.widgets.cache import CATALOG_SECONDS, TTLCache, database_key

# Statuses in which a subscription is the customer's current one for its product.
LIVE_STATUSES = (
    SubscriptionStatus.NOT_STARTED,
    SubscriptionStatus.IN_TRIAL,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAYMENT_PENDING,
)


@dataclass(frozen=True, slots=True)
class Catalog:
    product: Product
    plans: list[Plan]  # published, in display order, entitlements and add-ons loaded
    prices: dict[int, PriceVersion]  # plan pk -> latest price version
    addon_prices: dict[int, PriceVersion]  # add-on pk -> latest price version
    parents: dict[int, Plan] = field(default_factory=dict)  # parent plans outside `plans`


_catalogs: TTLCache[tuple[str, int, str | None], Catalog | None] = TTLCache(CATALOG_SECONDS)


async def environment_origins(session: AsyncSession, environment_pk: int) -> tuple[str, ...]:
    raw = await session.scalar(select(Environment.allowed_origins).where(Environment.pk == environment_pk))
    return tuple(str(o) for o in (raw or []) if isinstance(o, str))


async def _product(session: AsyncSession, environment_pk: int, product_ref: str | None) -> Product | None:
    query = select(Product).where(Product.environment_pk == environment_pk)
    if product_ref:
        return await session.scalar(query.where(Product.ref == product_ref))
    # No product named: the first product that has a published plan (the common one-product case).
    has_plans = select(Plan.pk).where(Plan.product_pk == Product.pk, Plan.status == PlanStatus.PUBLISHED)
    return await session.scalar(query.where(has_plans.exists()).order_by(Product.pk).limit(1))


async def latest_price_versions(
    session: AsyncSession, owner_column: Any, owner_pks: Sequence[int]
) -> dict[int, PriceVersion]:
    """The newest price version of each owner (plan or add-on), charges loaded."""
    if not owner_pks:
        return {}
    newer = aliased(PriceVersion)
    latest = (
        select(func.max(newer.version))
        .where(getattr(newer, owner_column.key) == owner_column)
        .correlate(PriceVersion)
        .scalar_subquery()
    )
    rows = await session.scalars(
        select(PriceVersion)
        .where(owner_column.in_(owner_pks), PriceVersion.version == latest)
        .options(selectinload(PriceVersion.charges).joinedload(Charge.feature))
    )
    return {getattr(v, owner_column.key): v for v in rows}


async def published_catalog(
    session: AsyncSession, environment_pk: int, product_ref: str | None
) -> Catalog | None:
    """The product's published plans, add-ons and prices; cached for CATALOG_SECONDS.

    The rows are loaded completely and never modified, so sharing them between requests
    (detached from their session) is safe.
    """
    key = (database_key(session), environment_pk, product_ref)
    cached = _catalogs.get(key)
    if cached is not None:
        return cached
    return _catalogs.put(key, await _load_catalog(session, environment_pk, product_ref))


async def _load_catalog(
    session: AsyncSession, environment_pk: int, product_ref: str | None
) -> Catalog | None:
    product = await _product(session, environment_pk, product_ref)
    if product is None:
        return None
    plans = list(
        await session.scalars(
            select(Plan)
            .where(Plan.product_pk == product.pk, Plan.status == PlanStatus.PUBLISHED)
            .order_by(Plan.display_order, Plan.pk)
            .options(
                selectinload(Plan.entitlements).joinedload(Entitlement.feature),
                selectinload(Plan.addons).selectinload(Addon.entitlements).joinedload(Entitlement.feature),
            )
        )
    )
    known = {p.pk for p in plans}
    missing = {p.parent_plan_pk for p in plans if p.parent_plan_pk and p.parent_plan_pk not in known}
    parents: dict[int, Plan] = {}
    if missing:
        rows = await session.scalars(
            select(Plan)
            .where(Plan.pk.in_(missing))
            .options(selectinload(Plan.entitlements).joinedload(Entitlement.feature))
        )
        parents = {p.pk: p for p in rows}
    addon_pks = sorted({a.pk for p in plans for a in p.addons if a.status is PlanStatus.PUBLISHED})
    return Catalog(
        product=product,
        plans=plans,
        prices=await latest_price_versions(session, PriceVersion.plan_pk, [p.pk for p in plans]),
        addon_prices=await latest_price_versions(session, PriceVersion.addon_pk, addon_pks),
        parents=parents,
    )


_customer_pks: TTLCache[tuple[str, int, str], int] = TTLCache(60.0, max_entries=4096)


async def customer_pk(session: AsyncSession, environment_pk: int, customer_ref: str) -> int | None:
    """A customer's primary key by its id; cached, since it never changes once created."""
    key = (database_key(session), environment_pk, customer_ref)
    cached = _customer_pks.get(key)
    if cached is not None:
        return cached
    pk = await session.scalar(
        select(Customer.pk).where(Customer.environment_pk == environment_pk, Customer.ref == customer_ref)
    )
    return _customer_pks.put(key, pk) if pk is not None else None


async def customer_subscriptions(
    session: AsyncSession,
    customer_pk: int,
    product_pk: int | None = None,
    *,
    live_only: bool = True,
    details: bool = False,
) -> list[Subscription]:
    """The customer's subscriptions, newest first, with their plan; `details` adds the plan's
    product and entitlements and the subscription's add-ons (for the portal)."""
    query = (
        select(Subscription)
        .where(Subscription.customer_pk == customer_pk)
        .order_by(Subscription.created_at.desc(), Subscription.pk.desc())
    )
    if details:
        query = query.options(
            joinedload(Subscription.plan).joinedload(Plan.product),
            joinedload(Subscription.plan).selectinload(Plan.entitlements).joinedload(Entitlement.feature),
            selectinload(Subscription.addons),
        )
    else:
        query = query.options(joinedload(Subscription.plan))
    if product_pk is not None:
        query = query.where(Subscription.product_pk == product_pk)
    if live_only:
        query = query.where(Subscription.status.in_(LIVE_STATUSES))
    return list(await session.scalars(query))


async def had_trial_or_paid(session: AsyncSession, customer_pk: int, product_pk: int) -> bool:
    """Whether the customer already had a trial or a paid period of this product: no second trial."""
    found = await session.scalar(
        select(Subscription.pk)
        .where(
            Subscription.customer_pk == customer_pk,
            Subscription.product_pk == product_pk,
            (Subscription.trial_end.is_not(None)) | (Subscription.activated_at.is_not(None)),
        )
        .limit(1)
    )
    return found is not None


async def plans_with_entitlements(session: AsyncSession, plan_pks: Sequence[int]) -> dict[int, Plan]:
    if not plan_pks:
        return {}
    rows = await session.scalars(
        select(Plan)
        .where(Plan.pk.in_(plan_pks))
        .options(selectinload(Plan.entitlements).joinedload(Entitlement.feature))
    )
    return {p.pk: p for p in rows}


async def addons_with_entitlements(session: AsyncSession, addon_pks: Sequence[int]) -> dict[int, Addon]:
    if not addon_pks:
        return {}
    rows = await session.scalars(
        select(Addon)
        .where(Addon.pk.in_(addon_pks))
        .options(selectinload(Addon.entitlements).joinedload(Entitlement.feature))
    )
    return {a.pk: a for a in rows}


async def price_versions(session: AsyncSession, pks: Sequence[int]) -> dict[int, PriceVersion]:
    if not pks:
        return {}
    rows = await session.scalars(
        select(PriceVersion)
        .where(PriceVersion.pk.in_(pks))
        .options(selectinload(PriceVersion.charges).joinedload(Charge.feature))
    )
    return {v.pk: v for v in rows}


async def usage_counters(session: AsyncSession, customer_pk: int) -> dict[int, UsageCounter]:
    rows = await session.scalars(select(UsageCounter).where(UsageCounter.customer_pk == customer_pk))
    return {c.feature_pk: c for c in rows}


async def subscription_addon_rows(
    session: AsyncSession, subscription_pks: Sequence[int]
) -> list[SubscriptionAddon]:
    if not subscription_pks:
        return []
    return list(
        await session.scalars(
            select(SubscriptionAddon).where(SubscriptionAddon.subscription_pk.in_(subscription_pks))
        )
    )


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


async def first_environment_with_customer(
    session: AsyncSession,
) -> tuple[Environment, Customer | None] | None:
    """The demo's environment (the first one) and its first customer, if any."""
    env = await session.scalar(select(Environment).order_by(Environment.pk).limit(1))
    if env is None:
        return None
    customer = await session.scalar(
        select(Customer).where(Customer.environment_pk == env.pk).order_by(Customer.pk).limit(1)
    )
    return env, customer
