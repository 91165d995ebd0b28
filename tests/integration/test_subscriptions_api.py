"""Provisioning, changes, cancellation and listing through /api/v1/subscriptions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.core.outbox import OutboxEvent
from app.db import Database
from app.subscriptions.models import Subscription
from tests.conftest import ApiEnv, problem_code
from tests.support.catalog_factory import CatalogFactory, flat, per_unit


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.product("other")
    await f.feature("seats", "METERED", "FLUCTUATING")
    await f.feature("sso")
    await f.addon("extra-seats", max_quantity=3, entitlements={"seats": {"limit": 10}}, charges=[flat(500)])
    await f.addon("other-addon", "other", charges=[flat(100)])
    await f.plan("free", pricing="FREE", display_order=0, entitlements={"seats": {"limit": 1}})
    await f.plan(
        "basic",
        display_order=1,
        entitlements={"seats": {"limit": 5}},
        charges=[flat(1000), flat(10000, "ANNUALLY")],
        addons=["extra-seats"],
        trial_days=14,
    )
    await f.plan(
        "pro",
        parent="basic",
        display_order=2,
        entitlements={"sso": {}},
        charges=[flat(3000), per_unit(500, "seats", min=1, max=50)],
    )
    await f.plan("draft", status="DRAFT", charges=[flat(1)])
    await f.plan("monthly-only", charges=[flat(2000)])
    await f.plan("euro", charges=[flat(900, currency="eur")])
    await f.coupon("half", percent_off_bp=5000)
    await f.coupon("five-eur", amount_off=500, currency="eur")
    await f.customer("acme")
    await f.customer("dollar", currency="usd")
    return f


async def provision(api: ApiEnv, **body: object) -> dict:
    return await api.ok("post", "/subscriptions", {"customerId": "acme", **body})


async def test_provision_paid_plan_starts_trial_once(api: ApiEnv, catalog: CatalogFactory) -> None:
    result = await provision(api, planId="basic", subscriptionId="sub-1", metadata={"crm": "x"})
    assert result["status"] == "SUCCESS"
    sub = result["subscription"]
    assert sub["id"] == "sub-1"
    assert sub["status"] == "IN_TRIAL"
    assert sub["productId"] == "app"
    assert sub["metadata"] == {"crm": "x"}
    assert sub["trialEnd"] is not None
    # Cancelled now, then subscribed again: no second trial in the same product.
    await api.ok("post", "/subscriptions/sub-1/cancel", {"cancellationTime": "IMMEDIATE"}, status=200)
    again = await provision(api, planId="basic")
    assert again["subscription"]["status"] == "ACTIVE"
    assert again["subscription"]["trialEnd"] is None


async def test_trial_override(api: ApiEnv, catalog: CatalogFactory) -> None:
    disabled = await provision(api, planId="basic", trialOverride={"disabled": True})
    assert disabled["subscription"]["status"] == "ACTIVE"
    other = await api.ok(
        "post",
        "/subscriptions",
        {"customerId": "dollar", "planId": "basic", "trialOverride": {"durationDays": 3}},
    )
    sub = other["subscription"]
    days = dt.datetime.fromisoformat(sub["trialEnd"]) - dt.datetime.fromisoformat(sub["startDate"])
    assert days == dt.timedelta(days=3)


async def test_provision_errors(api: ApiEnv, catalog: CatalogFactory, database: Database) -> None:
    cases = [
        ({"customerId": "nobody", "planId": "basic"}, 404, "customer_not_found", "customerId"),
        ({"planId": "nope"}, 404, "plan_not_found", "planId"),
        ({"planId": "draft"}, 422, "plan_not_published", "planId"),
        (
            {"planId": "monthly-only", "billingPeriod": "ANNUALLY"},
            400,
            "invalid_billing_period",
            "billingPeriod",
        ),
        ({"customerId": "dollar", "planId": "euro"}, 422, "currency_mismatch", "planId"),
        ({"planId": "basic", "couponId": "five-eur"}, 422, "currency_mismatch", "couponId"),
        ({"planId": "basic", "couponId": "nope"}, 404, "coupon_not_found", "couponId"),
        ({"planId": "basic", "addons": [{"addonId": "nope"}]}, 404, "addon_not_found", "addons[0].addonId"),
        (
            {"planId": "basic", "addons": [{"addonId": "other-addon"}]},
            422,
            "addon_not_compatible",
            "addons[0].addonId",
        ),
        (
            {"planId": "basic", "addons": [{"addonId": "extra-seats", "quantity": 4}]},
            422,
            "addon_quantity_exceeded",
            "addons[0].quantity",
        ),
        (
            {"planId": "basic", "addons": [{"addonId": "extra-seats", "quantity": 0}]},
            400,
            "invalid_quantity",
            "addons[0].quantity",
        ),
        (
            {"planId": "pro", "unitQuantities": [{"featureId": "seats", "quantity": 51}]},
            400,
            "invalid_quantity",
            "unitQuantities[0].quantity",
        ),
        (
            {"planId": "pro", "unitQuantities": [{"featureId": "nope", "quantity": 1}]},
            404,
            "feature_not_found",
            "unitQuantities[0].featureId",
        ),
        ({"planId": "basic", "billingPeriod": "WEEKLY"}, 400, "invalid_request", None),
    ]
    for body, status, code, param in cases:
        response = await api.post("/subscriptions", {"customerId": "acme", **body})
        assert response.status_code == status, (body, response.text)
        assert problem_code(response) == code, body
        if param:
            assert response.json()["param"] == param
    # Nothing was half-written.
    async with database.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.environment_pk == await catalog.env_pk())
        )
    assert count == 0
    assert (await api.ok("get", "/subscriptions"))["data"] == []


async def test_duplicate_subscription_id(api: ApiEnv, catalog: CatalogFactory) -> None:
    await provision(api, planId="basic", subscriptionId="s1")
    response = await api.post(
        "/subscriptions", {"customerId": "dollar", "planId": "basic", "subscriptionId": "s1"}
    )
    assert response.status_code == 409
    assert problem_code(response) == "subscription_exists"


async def test_upgrade_is_immediate_downgrade_is_scheduled(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    sub = (await provision(api, planId="basic", trialOverride={"disabled": True}))["subscription"]
    sso = await api.ok("get", "/customers/acme/entitlements/sso")
    assert sso["hasAccess"] is False

    up = await provision(api, planId="pro", unitQuantities=[{"featureId": "seats", "quantity": 2}])
    assert up["status"] == "SUCCESS"
    assert up["subscription"]["id"] == sub["id"]
    assert up["subscription"]["planId"] == "pro"
    assert up["subscription"]["unitQuantities"] == [{"featureId": "seats", "quantity": 2}]
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True

    down = await provision(api, planId="free")
    assert down["status"] == "SCHEDULED"
    changed = down["subscription"]
    assert changed["planId"] == "pro"
    assert changed["scheduledChange"]["planId"] == "free"
    assert changed["scheduledChange"]["scheduledAt"] == changed["currentPeriodEnd"]
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True

    cleared = await api.ok("delete", f"/subscriptions/{sub['id']}/scheduled-change")
    assert cleared["scheduledChange"] is None
    again = await api.delete(f"/subscriptions/{sub['id']}/scheduled-change")
    assert again.status_code == 409
    assert problem_code(again) == "no_scheduled_change"

    period = await api.ok(
        "patch", f"/subscriptions/{sub['id']}", {"billingPeriod": "ANNUALLY", "planId": "basic"}
    )
    assert period["status"] == "SCHEDULED"
    assert period["subscription"]["scheduledChange"]["billingPeriod"] == "ANNUALLY"

    async with database.session() as session:
        changes = (
            await session.scalars(
                select(OutboxEvent.change)
                .where(
                    OutboxEvent.environment_pk == await catalog.env_pk(),
                    OutboxEvent.entity_type == "subscription",
                )
                .order_by(OutboxEvent.pk)
            )
        ).all()
    assert changes[0] == "created"
    assert len(changes) == 5


async def test_free_plans_compare_by_display_order(api: ApiEnv, catalog: CatalogFactory) -> None:
    await catalog.plan("free-plus", pricing="FREE", display_order=5, entitlements={"seats": {"limit": 3}})
    await provision(api, planId="free")
    up = await provision(api, planId="free-plus")
    assert up["status"] == "SUCCESS"
    assert (await api.ok("get", "/customers/acme/entitlements/seats"))["usageLimit"] == 3
    down = await provision(api, planId="free")
    assert down["status"] == "SCHEDULED"


async def test_trial_replaced_by_paid_ends_trial(api: ApiEnv, catalog: CatalogFactory) -> None:
    trial = (await provision(api, planId="basic"))["subscription"]
    assert trial["status"] == "IN_TRIAL"
    paid = (await provision(api, planId="pro"))["subscription"]
    assert paid["id"] == trial["id"]
    assert paid["status"] == "ACTIVE"
    assert paid["trialEnd"] is not None
    assert paid["activatedAt"] is not None


async def test_patch_addons_coupon_metadata(api: ApiEnv, catalog: CatalogFactory) -> None:
    sub = (await provision(api, planId="basic", trialOverride={"disabled": True}))["subscription"]
    more = await api.ok(
        "patch", f"/subscriptions/{sub['id']}", {"addons": [{"addonId": "extra-seats", "quantity": 2}]}
    )
    assert more["status"] == "SUCCESS"
    assert more["subscription"]["addons"] == [{"addonId": "extra-seats", "quantity": 2}]
    assert (await api.ok("get", "/customers/acme/entitlements/seats"))["usageLimit"] == 25
    fewer = await api.ok("patch", f"/subscriptions/{sub['id']}", {"addons": []})
    assert fewer["status"] == "SCHEDULED"
    meta = await api.ok("patch", f"/subscriptions/{sub['id']}", {"metadata": {"a": 1}, "couponId": "half"})
    assert meta["subscription"]["metadata"] == {"a": 1}
    assert meta["subscription"]["couponId"] == "half"
    removed = await api.ok("patch", f"/subscriptions/{sub['id']}", {"couponId": None})
    assert removed["subscription"]["couponId"] is None
    wrong = await api.patch(f"/subscriptions/{sub['id']}", {"planId": "draft"})
    assert problem_code(wrong) == "plan_not_published"
    missing = await api.patch("/subscriptions/nope", {"metadata": {}})
    assert missing.status_code == 404
    assert problem_code(missing) == "subscription_not_found"


async def test_cancel_end_of_period_and_immediate(api: ApiEnv, catalog: CatalogFactory) -> None:
    sub = (await provision(api, planId="basic", trialOverride={"disabled": True}))["subscription"]
    later = await api.ok("post", f"/subscriptions/{sub['id']}/cancel", {}, status=200)
    assert later["status"] == "ACTIVE"
    assert later["cancelAt"] == sub["currentPeriodEnd"]
    assert (await api.ok("get", "/customers/acme/entitlements/seats"))["hasAccess"] is True
    now = await api.ok(
        "post", f"/subscriptions/{sub['id']}/cancel", {"cancellationTime": "IMMEDIATE"}, status=200
    )
    assert now["status"] == "CANCELED"
    assert now["endedAt"] is not None
    seats = await api.ok("get", "/customers/acme/entitlements/seats")
    assert seats["hasAccess"] is False
    again = await api.post(f"/subscriptions/{sub['id']}/cancel", {"cancellationTime": "IMMEDIATE"})
    assert again.status_code == 409
    assert problem_code(again) == "subscription_not_active"
    patch = await api.patch(f"/subscriptions/{sub['id']}", {"planId": "pro"})
    assert problem_code(patch) == "subscription_not_active"
    bad = await api.post(f"/subscriptions/{sub['id']}/cancel", {"cancellationTime": "SOMETIME"})
    assert bad.status_code == 400


async def test_products_are_independent_most_generous_wins(api: ApiEnv, catalog: CatalogFactory) -> None:
    await catalog.plan("side", "other", pricing="FREE", entitlements={"seats": {"limit": 8}})
    await provision(api, planId="free")
    await provision(api, planId="side")
    assert (await api.ok("get", "/customers/acme/entitlements/seats"))["usageLimit"] == 8
    listing = await api.ok("get", "/subscriptions?customerId=acme")
    assert len(listing["data"]) == 2


async def test_list_filters_paginates_and_isolates(
    api: ApiEnv, other_api: ApiEnv, catalog: CatalogFactory
) -> None:
    ids = []
    for index in range(3):
        await catalog.customer(f"c{index}")
        body = {"customerId": f"c{index}", "planId": "free"}
        ids.append((await api.ok("post", "/subscriptions", body))["subscription"]["id"])
    await api.ok("post", f"/subscriptions/{ids[0]}/cancel", {"cancellationTime": "IMMEDIATE"}, status=200)
    first = await api.ok("get", "/subscriptions?limit=2")
    assert [s["id"] for s in first["data"]] == [ids[2], ids[1]]
    assert first["hasMore"] is True
    second = await api.ok("get", f"/subscriptions?limit=2&startingAfter={first['nextCursor']}")
    assert [s["id"] for s in second["data"]] == [ids[0]]
    assert second["hasMore"] is False
    canceled = await api.ok("get", "/subscriptions?status=CANCELED")
    assert [s["id"] for s in canceled["data"]] == [ids[0]]
    by_customer = await api.ok("get", "/subscriptions?customerId=c1")
    assert [s["id"] for s in by_customer["data"]] == [ids[1]]
    unknown = await api.get("/subscriptions?customerId=nobody")
    assert problem_code(unknown) == "customer_not_found"
    bad_limit = await api.get("/subscriptions?limit=0")
    assert problem_code(bad_limit) == "invalid_limit"
    assert (await api.ok("get", f"/subscriptions/{ids[1]}"))["customerId"] == "c1"
    # Another environment's key sees none of it.
    assert (await other_api.ok("get", "/subscriptions"))["data"] == []
    hidden = await other_api.get(f"/subscriptions/{ids[1]}")
    assert hidden.status_code == 404
    assert problem_code(hidden) == "subscription_not_found"
    cancel = await other_api.post(f"/subscriptions/{ids[1]}/cancel", {})
    assert problem_code(cancel) == "subscription_not_found"


async def test_provisioning_again_resumes_and_patch_keeps_schedule(
    api: ApiEnv, catalog: CatalogFactory
) -> None:
    sub = (await provision(api, planId="pro"))["subscription"]
    await api.ok("post", f"/subscriptions/{sub['id']}/cancel", {}, status=200)
    resumed = await provision(api, planId="pro")
    assert resumed["subscription"]["cancelAt"] is None
    assert resumed["subscription"]["canceledAt"] is None
    down = await provision(api, planId="basic")
    assert down["status"] == "SCHEDULED"
    meta = await api.ok("patch", f"/subscriptions/{sub['id']}", {"metadata": {"k": "v"}})
    assert meta["status"] == "SUCCESS"
    assert meta["subscription"]["scheduledChange"]["planId"] == "basic"
    stay = await provision(api, planId="pro")
    assert stay["subscription"]["scheduledChange"] is None
    # The first paid subscription fixed the customer's currency.
    euro = await api.post("/subscriptions", {"customerId": "acme", "planId": "euro"})
    assert problem_code(euro) == "currency_mismatch"


async def test_billing_period_change_preview(api: ApiEnv, catalog: CatalogFactory) -> None:
    await provision(api, planId="basic", trialOverride={"disabled": True})
    preview = await api.ok(
        "post",
        "/subscriptions/preview",
        {"customerId": "acme", "planId": "basic", "billingPeriod": "ANNUALLY"},
        status=200,
    )
    assert preview["changeType"] == "BILLING_PERIOD_CHANGE"
    assert preview["amountDueNow"] == 0
    assert preview["nextRecurringTotal"] == 10000


async def test_paying_customers_get_no_new_trial(api: ApiEnv, catalog: CatalogFactory) -> None:
    paid = (await provision(api, planId="basic", trialOverride={"disabled": True}))["subscription"]
    await api.ok("post", f"/subscriptions/{paid['id']}/cancel", {"cancellationTime": "IMMEDIATE"}, status=200)
    again = (await provision(api, planId="basic"))["subscription"]
    assert again["status"] == "ACTIVE"
    assert again["id"] != paid["id"]
    # A free subscription never blocks a later trial.
    await catalog.customer("fresh")
    await api.ok("post", "/subscriptions", {"customerId": "fresh", "planId": "free"})
    preview = await api.ok(
        "post", "/subscriptions/preview", {"customerId": "fresh", "planId": "basic"}, status=200
    )
    assert preview["changeType"] == "UPGRADE"
    assert preview["amountDueNow"] == 0
    assert preview["trialEnd"] is not None
    trial = await api.ok("post", "/subscriptions", {"customerId": "fresh", "planId": "basic"})
    assert trial["subscription"]["status"] == "IN_TRIAL"
    assert trial["subscription"]["planId"] == "basic"


async def test_patch_to_another_products_plan(api: ApiEnv, catalog: CatalogFactory) -> None:
    await catalog.plan("side", "other", pricing="FREE")
    sub = (await provision(api, planId="free"))["subscription"]
    response = await api.patch(f"/subscriptions/{sub['id']}", {"planId": "side"})
    assert response.status_code == 422
    assert problem_code(response) == "plan_not_in_product"
