"""Time: trials, cancellation at period end, scheduled changes, renewals, payment states.

The entitlement engine is checked at future moments *before* the worker step has run, then
`advance_subscriptions` persists the same transitions.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.catalog.models import Entitlement, Plan, plan_addons
from app.customers.models import Customer
from app.db import Database
from app.subscriptions.entitlements import (
    check_entitlement,
    invalidate_entitlements_for_addon,
    invalidate_entitlements_for_plan,
)
from app.subscriptions.lifecycle import advance_subscriptions
from app.subscriptions.models import Subscription, SubscriptionStatus
from app.subscriptions.schemas import AddonInput, CancelRequest, ProvisionRequest, TrialOverride
from app.subscriptions.service import (
    Config,
    activate_subscription,
    cancel_subscription,
    provision_subscription,
)
from tests.conftest import ApiEnv
from tests.support.catalog_factory import CatalogFactory, flat

T0 = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.feature("seats", "METERED", "FLUCTUATING")
    await f.feature("sso")
    await f.plan("free", pricing="FREE", entitlements={"seats": {"limit": 1}})
    await f.plan("basic", entitlements={"seats": {"limit": 5}}, charges=[flat(1000)], trial_days=14)
    await f.plan(
        "trial-only",
        entitlements={"sso": {}},
        charges=[flat(1000)],
        trial_days=7,
        trial_end_behavior="CANCEL_SUBSCRIPTION",
    )
    await f.customer("acme")
    return f


class Clock:
    """Service calls at chosen moments, each in its own transaction."""

    def __init__(self, database: Database, env_pk: int) -> None:
        self.database = database
        self.env_pk = env_pk

    async def provision(self, at: dt.datetime, plan: str, **kwargs: object) -> str:
        async with self.database.session() as session:
            request = ProvisionRequest(customer_id="acme", plan_id=plan, **kwargs)  # type: ignore[arg-type]
            result = await provision_subscription(session, self.env_pk, request, now=at)
            return result.subscription.id

    async def check(self, at: dt.datetime, feature: str = "seats") -> tuple[bool, int | None]:
        async with self.database.session() as session:
            answer = await check_entitlement(session, self.env_pk, "acme", feature, now=at)
            return answer.has_access, answer.usage_limit

    async def advance(self, at: dt.datetime) -> int:
        async with self.database.session() as session:
            return await advance_subscriptions(session, at, environment_pk=self.env_pk)

    async def sub(self, ref: str) -> Subscription:
        async with self.database.session() as session:
            row = await session.scalar(
                select(Subscription).where(
                    Subscription.environment_pk == self.env_pk, Subscription.ref == ref
                )
            )
            assert row is not None
            return row


@pytest.fixture
async def clock(catalog: CatalogFactory, database: Database) -> Clock:
    return Clock(database, await catalog.env_pk())


async def test_trial_converts_on_read_and_in_worker(clock: Clock, database: Database) -> None:
    ref = await clock.provision(T0, "basic")
    async with database.session() as session:
        await check_entitlement(session, clock.env_pk, "acme", "seats", now=T0)
        valid_until = await session.scalar(
            select(Customer.snapshot_valid_until).where(
                Customer.environment_pk == clock.env_pk, Customer.ref == "acme"
            )
        )
    assert valid_until == T0 + dt.timedelta(days=14)
    after = T0 + dt.timedelta(days=15)
    assert await clock.check(after) == (True, 5)
    await clock.advance(after)
    sub = await clock.sub(ref)
    assert sub.status == SubscriptionStatus.ACTIVE
    assert sub.activated_at == T0 + dt.timedelta(days=14)
    assert sub.current_period_start == T0 + dt.timedelta(days=14)
    assert sub.current_period_end == dt.datetime(2026, 3, 14, 12, tzinfo=dt.UTC)


async def test_trial_cancel_behavior_stops_granting_at_trial_end(clock: Clock) -> None:
    ref = await clock.provision(T0, "trial-only")
    assert (await clock.check(T0, "sso"))[0] is True
    end = T0 + dt.timedelta(days=7)
    assert (await clock.check(end - dt.timedelta(seconds=1), "sso"))[0] is True
    assert (await clock.check(end, "sso"))[0] is False
    assert await clock.advance(end) == 1
    assert await clock.advance(end) == 0
    sub = await clock.sub(ref)
    assert sub.status == SubscriptionStatus.EXPIRED
    assert sub.ended_at == end


async def test_cancel_at_period_end_and_month_end_renewals(clock: Clock, database: Database) -> None:
    ref = await clock.provision(T0, "basic", trial_override=TrialOverride(disabled=True))
    sub = await clock.sub(ref)
    # Anchored on Jan 31: Feb 28, then back to Mar 31.
    assert sub.current_period_end == dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
    await clock.advance(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    sub = await clock.sub(ref)
    assert sub.current_period_start == dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
    assert sub.current_period_end == dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)

    async with database.session() as session:
        await cancel_subscription(
            session, clock.env_pk, ref, CancelRequest(), now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
        )
    end = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
    assert (await clock.check(end - dt.timedelta(seconds=1)))[0] is True
    assert (await clock.check(end))[0] is False
    await clock.advance(end + dt.timedelta(days=400))
    sub = await clock.sub(ref)
    assert sub.status == SubscriptionStatus.CANCELED
    assert sub.ended_at == end


async def test_scheduled_downgrade_applies_at_period_end(clock: Clock) -> None:
    ref = await clock.provision(T0, "basic", trial_override=TrialOverride(disabled=True))
    mid = T0 + dt.timedelta(days=10)
    async with clock.database.session() as session:
        result = await provision_subscription(
            session, clock.env_pk, ProvisionRequest(customer_id="acme", plan_id="free"), now=mid
        )
    assert result.status == "SCHEDULED"
    end = dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
    assert await clock.check(end - dt.timedelta(seconds=1)) == (True, 5)
    assert await clock.check(end) == (True, 1)
    await clock.advance(end)
    sub = await clock.sub(ref)
    assert sub.scheduled_change is None
    assert sub.current_period_start == end
    assert await clock.check(end + dt.timedelta(days=1)) == (True, 1)


class AlwaysPay:
    async def requires_payment(self, session: object, customer: object, config: Config) -> bool:
        return True


async def test_payment_pending_grants_only_after_activation(clock: Clock, database: Database) -> None:
    async with database.session() as session:
        request = ProvisionRequest(
            customer_id="acme", plan_id="basic", trial_override=TrialOverride(disabled=True)
        )
        result = await provision_subscription(
            session, clock.env_pk, request, now=T0, payment_gate=AlwaysPay()
        )
    assert result.subscription.status == SubscriptionStatus.PAYMENT_PENDING
    assert (await clock.check(T0))[0] is False
    async with database.session() as session:
        sub = await session.scalar(select(Subscription).where(Subscription.ref == result.subscription.id))
        assert sub is not None
        await activate_subscription(session, sub, T0)
    assert await clock.check(T0) == (True, 5)
    # A failed renewal (pending again, but activated before) keeps granting: dunning grace.
    async with database.session() as session:
        await session.execute(
            update(Subscription)
            .where(Subscription.ref == result.subscription.id)
            .values(status=SubscriptionStatus.PAYMENT_PENDING)
        )
        await session.execute(
            update(Customer)
            .where(Customer.environment_pk == clock.env_pk, Customer.ref == "acme")
            .values(entitlements_snapshot=None)
        )
    assert await clock.check(T0) == (True, 5)


async def test_plan_entitlement_change_invalidates(clock: Clock, database: Database) -> None:
    await clock.provision(T0, "free")
    assert await clock.check(T0) == (True, 1)
    async with database.session() as session:
        plan_pk = await session.scalar(
            select(Plan.pk).where(Plan.environment_pk == clock.env_pk, Plan.ref == "free")
        )
        assert plan_pk is not None
        await session.execute(update(Entitlement).where(Entitlement.plan_pk == plan_pk).values(usage_limit=2))
        await invalidate_entitlements_for_plan(session, plan_pk)
    assert await clock.check(T0) == (True, 2)


async def test_addon_entitlement_change_invalidates(
    clock: Clock, catalog: CatalogFactory, database: Database
) -> None:
    addon_pk = await catalog.addon("more-seats", entitlements={"seats": {"limit": 10}}, charges=[flat(100)])
    async with database.session() as session:
        plan_pk = await session.scalar(
            select(Plan.pk).where(Plan.environment_pk == clock.env_pk, Plan.ref == "basic")
        )
        await session.execute(plan_addons.insert().values(plan_pk=plan_pk, addon_pk=addon_pk))
    await clock.provision(T0, "basic", addons=[AddonInput("more-seats", 2)])
    assert await clock.check(T0) == (True, 25)
    async with database.session() as session:
        await session.execute(
            update(Entitlement).where(Entitlement.addon_pk == addon_pk).values(usage_limit=1)
        )
        await invalidate_entitlements_for_addon(session, addon_pk)
    assert await clock.check(T0) == (True, 7)
