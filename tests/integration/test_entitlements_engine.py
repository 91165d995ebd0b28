"""The engine's storage contract: lean hot path, snapshot validity, races with invalidation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select

from app.customers.models import Customer
from app.db import Database
from app.subscriptions.entitlements import check_entitlement, invalidate_customers, refresh_snapshot
from app.subscriptions.schemas import ProvisionRequest, UsageReport
from app.subscriptions.service import get_subscription, provision_subscription
from app.subscriptions.usage import report_usage
from tests.conftest import ApiEnv
from tests.support.catalog_factory import CatalogFactory, flat

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.feature("calls", "METERED")
    await f.plan("free", pricing="FREE", entitlements={"calls": {"limit": 10, "reset": "BILLING_PERIOD"}})
    await f.plan("paid", charges=[flat(100)], entitlements={"calls": {"limit": 99}}, trial_days=3)
    await f.customer("acme")
    return f


async def _snapshot(database: Database, env_pk: int) -> tuple[Any, dt.datetime]:
    async with database.session() as session:
        row = (
            await session.execute(
                select(Customer.entitlements_snapshot, Customer.updated_at).where(
                    Customer.environment_pk == env_pk, Customer.ref == "acme"
                )
            )
        ).one()
        return row[0], row[1]


async def test_fresh_check_is_one_statement(catalog: CatalogFactory, database: Database) -> None:
    env_pk = await catalog.env_pk()
    async with database.session() as session:
        await provision_subscription(session, env_pk, ProvisionRequest("acme", "free"), now=T0)
    async with database.session() as session:
        await check_entitlement(session, env_pk, "acme", "calls", now=T0)  # materialises
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with database.session() as session:
            answer = await check_entitlement(session, env_pk, "acme", "calls", now=T0)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert answer.usage_limit == 10
    # BILLING_PERIOD on a monthly plan: the window is the billing period.
    assert answer.usage_period_start == T0
    assert answer.usage_period_end == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert not [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]


async def test_refresh_racing_an_invalidation_is_not_stored(
    catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()
    async with database.session() as session:
        await provision_subscription(session, env_pk, ProvisionRequest("acme", "free"), now=T0)
    async with database.session() as session:
        await check_entitlement(session, env_pk, "acme", "calls", now=T0)
    snapshot, seen = await _snapshot(database, env_pk)
    assert snapshot is not None
    customer_pk = await session_customer_pk(database, env_pk)
    async with database.session() as session:
        await invalidate_customers(session, [customer_pk])
    snapshot, moved = await _snapshot(database, env_pk)
    assert snapshot is None
    assert moved != seen
    # A computation that started before the invalidation must not overwrite it.
    async with database.session() as session:
        await refresh_snapshot(session, customer_pk, T0, seen=seen)
    assert (await _snapshot(database, env_pk))[0] is None
    async with database.session() as session:
        await refresh_snapshot(session, customer_pk, T0, seen=moved)
    stored, after = await _snapshot(database, env_pk)
    assert stored is not None
    assert after == moved  # storing a snapshot is not a customer change


async def session_customer_pk(database: Database, env_pk: int) -> int:
    async with database.session() as session:
        pk = await session.scalar(
            select(Customer.pk).where(Customer.environment_pk == env_pk, Customer.ref == "acme")
        )
        assert pk is not None
        return pk


async def test_get_shows_state_as_of_now(catalog: CatalogFactory, database: Database) -> None:
    env_pk = await catalog.env_pk()
    async with database.session() as session:
        result = await provision_subscription(session, env_pk, ProvisionRequest("acme", "paid"), now=T0)
    assert result.subscription.status == "IN_TRIAL"
    async with database.session() as session:
        later = await get_subscription(session, env_pk, result.subscription.id, now=T0 + dt.timedelta(days=4))
    assert later.status == "ACTIVE"
    assert later.current_period_start == T0 + dt.timedelta(days=3)


async def test_usage_batch_refreshes_stale_snapshots_together(
    catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()
    for ref in ("b1", "b2", "b3"):
        await catalog.customer(ref)
        async with database.session() as session:
            await provision_subscription(session, env_pk, ProvisionRequest(ref, "free"), now=T0)
    async with database.session() as session:
        reports = [UsageReport(ref, "calls", 2, f"{ref}-1") for ref in ("b1", "b2", "b3", "acme")]
        await report_usage(session, env_pk, reports, now=T0)
    async with database.session() as session:
        snapshots = dict(
            (
                await session.execute(
                    select(Customer.ref, Customer.entitlements_snapshot).where(
                        Customer.environment_pk == env_pk
                    )
                )
            ).all()
        )
    b1, acme = snapshots["b1"], snapshots["acme"]
    assert b1 is not None
    assert acme is not None
    assert b1["features"]["calls"]["limit"] == 10
    assert acme["features"] == {}
    async with database.session() as session:
        answer = await check_entitlement(session, env_pk, "b2", "calls", now=T0)
    assert answer.current_usage == 2


async def test_a_plan_edit_reaches_its_subscribers_and_heirs_only(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    await catalog.addon("boost", entitlements={"calls": {"limit": 5}}, charges=[flat(10)])
    await catalog.plan("paid-plus", parent="paid", charges=[flat(200)], addons=["boost"])
    env_pk = await catalog.env_pk()
    for ref in ("bob", "carol"):
        await catalog.customer(ref)
    for customer, plan, addons in (
        ("acme", "free", []),
        ("bob", "paid", []),
        ("carol", "paid-plus", [{"addonId": "boost", "quantity": 1}]),
    ):
        await api.ok("post", "/subscriptions", {"customerId": customer, "planId": plan, "addons": addons})
        await api.ok("get", f"/customers/{customer}/entitlements/calls")  # materialised

    async def stale() -> set[str]:
        async with database.session() as session:
            rows = await session.scalars(
                select(Customer.ref).where(
                    Customer.environment_pk == env_pk, Customer.entitlements_snapshot.is_(None)
                )
            )
            return set(rows.all())

    assert await stale() == set()
    await api.ok("patch", "/plans/paid", {"entitlements": [{"featureId": "calls", "usageLimit": 120}]})
    assert await stale() == {"bob", "carol"}, "the free plan's customer keeps a valid snapshot"
    for customer, limit in (("acme", 10), ("bob", 120), ("carol", 125)):
        check = await api.ok("get", f"/customers/{customer}/entitlements/calls")
        assert check["usageLimit"] == limit, customer
    assert await stale() == set()
    await api.ok("patch", "/addons/boost", {"entitlements": [{"featureId": "calls", "usageLimit": 7}]})
    assert await stale() == {"carol"}, "only the add-on's customer"
    assert (await api.ok("get", "/customers/carol/entitlements/calls"))["usageLimit"] == 127
