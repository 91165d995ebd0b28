"""POST /usage: batches, idempotency, all-or-nothing validation, windows."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.subscriptions.entitlements import check_entitlement
from app.subscriptions.models import UsageEvent
from app.subscriptions.schemas import UsageReport
from app.subscriptions.usage import report_usage
from tests.conftest import ApiEnv, problem_code
from tests.support.catalog_factory import CatalogFactory, flat


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    factory = CatalogFactory(database, api)
    await factory.product("app")
    await factory.feature("api-calls", "METERED")
    await factory.feature("seats", "METERED", "FLUCTUATING")
    await factory.feature("sso")
    await factory.plan(
        "basic",
        entitlements={"api-calls": {"limit": 1000, "reset": "DAY"}, "seats": {"limit": 10}, "sso": {}},
        charges=[flat(1000)],
    )
    await factory.customer("acme")
    await factory.customer("globex")
    await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "basic"})
    return factory


def usage(
    key: str, value: int = 1, customer: str = "acme", feature: str = "api-calls", **extra: object
) -> dict:
    return {"customerId": customer, "featureId": feature, "value": value, "idempotencyKey": key, **extra}


async def current(api: ApiEnv, feature: str = "api-calls", customer: str = "acme") -> int:
    return (await api.ok("get", f"/customers/{customer}/entitlements/{feature}"))["currentUsage"]


async def event_count(database: Database, env_pk: int) -> int:
    async with database.session() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(UsageEvent).where(UsageEvent.environment_pk == env_pk)
            )
            or 0
        )


async def test_batch_sums_per_counter_and_repeats_change_nothing(
    api: ApiEnv, catalog: CatalogFactory
) -> None:
    batch = {"usages": [usage(f"k{i}", 2) for i in range(10)] + [usage("g1", 5, customer="globex")]}
    result = await api.ok("post", "/usage", batch, status=200)
    assert result["accepted"] == 11
    assert result["duplicates"] == 0
    assert await current(api) == 20
    again = await api.ok("post", "/usage", batch, status=200)
    assert again["accepted"] == 0
    assert again["duplicates"] == 11
    assert all(not item["applied"] for item in again["data"])
    assert await current(api) == 20
    globex = await api.ok("get", "/customers/globex/entitlements/api-calls")
    assert globex["hasAccess"] is False
    assert globex["accessDeniedReason"] == "NoFeatureEntitlement"
    assert globex["currentUsage"] == 5


async def test_set_and_delta_in_order(api: ApiEnv, catalog: CatalogFactory) -> None:
    reports = [
        usage("a", 3, feature="seats"),
        usage("b", 7, feature="seats", updateBehavior="SET"),
        usage("c", -2, feature="seats"),
    ]
    await api.ok("post", "/usage", {"usages": reports}, status=200)
    assert await current(api, "seats") == 5
    await api.ok(
        "post", "/usage", {"usages": [usage("d", 1, feature="seats", updateBehavior="SET")]}, status=200
    )
    assert await current(api, "seats") == 1


async def test_bad_row_writes_nothing(api: ApiEnv, catalog: CatalogFactory, database: Database) -> None:
    env_pk = await catalog.env_pk()
    cases = [
        (usage("x", customer="nobody"), "customer_not_found", 404, "usages[2].customerId"),
        (usage("x", feature="nope"), "feature_not_found", 404, "usages[2].featureId"),
        (usage("x", feature="sso"), "feature_not_metered", 400, "usages[2].featureId"),
        (usage("ok1"), "duplicate_idempotency_key", 400, "usages[2].idempotencyKey"),
    ]
    for bad, code, status, param in cases:
        response = await api.post("/usage", {"usages": [usage("ok1"), usage("ok2"), bad]})
        assert response.status_code == status, response.text
        assert problem_code(response) == code
        assert response.json()["param"] == param
    assert await event_count(database, env_pk) == 0
    assert await current(api) == 0


async def test_batch_too_large_and_malformed(api: ApiEnv, catalog: CatalogFactory) -> None:
    response = await api.post("/usage", {"usages": [usage(f"k{i}") for i in range(1001)]})
    assert response.status_code == 400
    assert problem_code(response) == "batch_too_large"
    malformed = await api.post("/usage", {"usages": [{"customerId": "acme"}]})
    assert malformed.status_code == 400


async def test_full_batch_of_1000(api: ApiEnv, catalog: CatalogFactory) -> None:
    result = await api.ok("post", "/usage", {"usages": [usage(f"k{i}") for i in range(1000)]}, status=200)
    assert result["accepted"] == 1000
    assert await current(api) == 1000
    check = await api.ok("get", "/customers/acme/entitlements/api-calls")
    assert check["hasAccess"] is False


async def test_other_environment_sees_nothing(
    api: ApiEnv, other_api: ApiEnv, catalog: CatalogFactory
) -> None:
    response = await other_api.post("/usage", {"usages": [usage("k1")]})
    assert response.status_code == 404
    assert problem_code(response) == "customer_not_found"
    # The same idempotency key is independent per environment.
    await api.ok("post", "/usage", {"usages": [usage("k1")]}, status=200)
    assert await current(api) == 1


async def test_window_reset_and_closed_period_events(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()
    now = dt.datetime.now(dt.UTC)
    async with database.session() as session:
        await report_usage(session, env_pk, [UsageReport("acme", "api-calls", 40, "d1")], now=now)
    tomorrow = now + dt.timedelta(days=1, minutes=1)
    async with database.session() as session:
        # An event timestamped in yesterday's window is kept but does not count today.
        late = UsageReport("acme", "api-calls", 7, "late", timestamp=now)
        fresh = UsageReport("acme", "api-calls", 3, "d2")
        result = await report_usage(session, env_pk, [late, fresh], now=tomorrow)
        assert result.accepted == 2
    async with database.session() as session:
        check = await check_entitlement(session, env_pk, "acme", "api-calls", now=tomorrow)
    assert check.current_usage == 3
    assert check.usage_period_start is not None
    assert check.usage_period_start <= tomorrow
    assert await event_count(database, env_pk) == 3


async def test_concurrent_duplicate_reports_apply_once(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()

    async def send() -> int:
        async with database.session() as session:
            result = await report_usage(session, env_pk, [UsageReport("acme", "api-calls", 5, "same-key")])
            return result.accepted

    accepted = await asyncio.gather(*(send() for _ in range(4)), return_exceptions=True)
    assert sum(a for a in accepted if isinstance(a, int)) == 1
    assert await current(api) == 5


async def test_timestamps_and_bounds(api: ApiEnv, catalog: CatalogFactory) -> None:
    naive = usage("n1", 2, timestamp="2030-01-01T00:00:00")  # future and without offset: counted now
    await api.ok("post", "/usage", {"usages": [naive]}, status=200)
    assert await current(api) == 2
    huge = await api.post("/usage", {"usages": [usage("h1", 2**62)]})
    assert huge.status_code == 400
    empty_key = await api.post("/usage", {"usages": [usage("")]})
    assert empty_key.status_code == 400
    assert problem_code(empty_key) == "invalid_idempotency_key"


async def test_concurrent_overlapping_batches(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()
    keys = [f"o{i}" for i in range(50)]

    async def send(order: list[str]) -> int:
        async with database.session() as session:
            reports = [UsageReport("acme", "api-calls", 1, key) for key in order]
            return (await report_usage(session, env_pk, reports)).accepted

    accepted = await asyncio.gather(send(keys), send(list(reversed(keys))), send(keys[::2]))
    assert sum(accepted) == 50
    assert await current(api) == 50
