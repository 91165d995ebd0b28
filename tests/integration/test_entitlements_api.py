"""Entitlement checks through the API: plans, parents, add-ons, trials, cancellation, usage."""

from __future__ import annotations

import pytest

from app.db import Database
from tests.conftest import ApiEnv, problem_code
from tests.support.catalog_factory import CatalogFactory, flat


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    factory = CatalogFactory(database, api)
    await factory.product("app")
    await factory.feature("sso")
    await factory.feature("projects", "NUMBER")
    await factory.feature("api-calls", "METERED")
    await factory.feature("seats", "METERED", "FLUCTUATING")
    await factory.addon(
        "extra-seats", max_quantity=5, entitlements={"seats": {"limit": 10}}, charges=[flat(500)]
    )
    await factory.plan(
        "basic",
        display_order=1,
        entitlements={
            "projects": {"limit": 3},
            "api-calls": {"limit": 100, "reset": "MONTH"},
            "seats": {"limit": 5},
        },
        charges=[flat(1000), flat(10000, "ANNUALLY")],
        addons=["extra-seats"],
    )
    await factory.plan(
        "pro",
        parent="basic",
        display_order=2,
        entitlements={"sso": {}, "projects": {"unlimited": True}},
        charges=[flat(3000)],
    )
    await factory.customer("acme")
    return factory


async def test_check_inherits_parent_and_adds_addons(api: ApiEnv, catalog: CatalogFactory) -> None:
    await api.ok(
        "post",
        "/subscriptions",
        {"customerId": "acme", "planId": "pro", "addons": [{"addonId": "extra-seats", "quantity": 2}]},
    )
    sso = await api.ok("get", "/customers/acme/entitlements/sso")
    assert sso["hasAccess"] is True and sso["featureType"] == "BOOLEAN"
    projects = await api.ok("get", "/customers/acme/entitlements/projects")
    assert projects["isUnlimited"] is True and projects["hasAccess"] is True
    calls = await api.ok("get", "/customers/acme/entitlements/api-calls")
    assert calls["usageLimit"] == 100 and calls["currentUsage"] == 0 and calls["resetPeriod"] == "MONTH"
    assert calls["usagePeriodStart"] is not None and calls["usagePeriodEnd"] is not None
    seats = await api.ok("get", "/customers/acme/entitlements/seats")
    assert seats["usageLimit"] == 5 + 2 * 10
    listing = await api.ok("get", "/customers/acme/entitlements")
    assert {e["featureId"] for e in listing["data"]} == {"sso", "projects", "api-calls", "seats"}


async def test_no_entitlement_unknown_feature_and_customer(api: ApiEnv, catalog: CatalogFactory) -> None:
    await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "basic"})
    sso = await api.ok("get", "/customers/acme/entitlements/sso")
    assert sso["hasAccess"] is False and sso["accessDeniedReason"] == "NoFeatureEntitlement"
    missing = await api.get("/customers/acme/entitlements/nope")
    assert missing.status_code == 404 and problem_code(missing) == "feature_not_found"
    nobody = await api.get("/customers/nobody/entitlements/sso")
    assert nobody.status_code == 404 and problem_code(nobody) == "customer_not_found"


async def test_metered_limit_soft_and_requested_usage(api: ApiEnv, catalog: CatalogFactory) -> None:
    await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "basic"})
    report = {"customerId": "acme", "featureId": "api-calls", "value": 99, "idempotencyKey": "k1"}
    assert (await api.ok("post", "/usage", {"usages": [report]}, status=200))["accepted"] == 1
    check = await api.ok("get", "/customers/acme/entitlements/api-calls")
    assert check["currentUsage"] == 99 and check["requestedUsage"] == 1 and check["hasAccess"] is True
    denied = await api.ok("get", "/customers/acme/entitlements/api-calls?requestedUsage=2")
    assert denied["hasAccess"] is False and denied["accessDeniedReason"] == "UsageLimitExceeded"
    projects = await api.ok("get", "/customers/acme/entitlements/projects?requestedUsage=4")
    assert projects["usageLimit"] == 3 and projects["hasAccess"] is False


async def test_other_environment_sees_nothing(
    api: ApiEnv, other_api: ApiEnv, catalog: CatalogFactory
) -> None:
    await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "basic"})
    response = await other_api.get("/customers/acme/entitlements/projects")
    assert response.status_code == 404 and problem_code(response) == "customer_not_found"
    listing = await other_api.ok("get", "/subscriptions")
    assert listing["data"] == []
