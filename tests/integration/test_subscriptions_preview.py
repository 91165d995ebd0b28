"""POST /subscriptions/preview: new subscriptions, coupons, proration, arrears, no writes."""

from __future__ import annotations

import datetime as dt

import pytest

from app.db import Database
from app.subscriptions.schemas import AddonInput, ProvisionRequest, TrialOverride, UnitQuantityInput
from app.subscriptions.service import preview_subscription, provision_subscription
from tests.conftest import ApiEnv, problem_code
from tests.support.catalog_factory import CatalogFactory, flat, per_unit


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.feature("seats", "METERED", "FLUCTUATING")
    await f.feature("api-calls", "METERED")
    await f.addon("extra", charges=[flat(250)])
    await f.plan("basic", display_order=1, charges=[flat(1000)], trial_days=14, addons=["extra"])
    await f.plan(
        "pro",
        display_order=2,
        charges=[
            flat(3000),
            per_unit(500, "seats"),
            {
                "model": "USAGE_BASED",
                "amount": 2,
                "feature": "api-calls",
                "period": "MONTHLY",
                "currency": "usd",
            },
        ],
    )
    await f.plan(
        "tiered",
        charges=[
            {
                "model": "TIERED",
                "mode": "GRADUATED",
                "feature": "seats",
                "tiers": [
                    {"upTo": 5, "unitAmount": 1000, "flatAmount": 0},
                    {"upTo": None, "unitAmount": 800, "flatAmount": 100},
                ],
                "period": "MONTHLY",
                "currency": "usd",
            }
        ],
    )
    await f.coupon("half", percent_off_bp=5000)
    await f.coupon("once", amount_off=300, currency="usd", duration="ONCE")
    await f.customer("acme")
    return f


async def preview(api: ApiEnv, **body: object) -> dict:
    return await api.ok("post", "/subscriptions/preview", {"customerId": "acme", **body}, status=200)


async def test_new_subscription_previews(api: ApiEnv, catalog: CatalogFactory) -> None:
    trial = await preview(api, planId="basic")
    assert trial["changeType"] == "NEW"
    assert trial["amountDueNow"] == 0
    assert trial["trialEnd"] is not None
    assert trial["nextRecurringTotal"] == 1000

    half = await preview(api, planId="basic", couponId="half", trialOverride={"disabled": True})
    assert half["amountDueNow"] == 500
    assert half["nextRecurringTotal"] == 500
    assert half["currency"] == "usd"

    once = await preview(
        api,
        planId="basic",
        couponId="once",
        addons=[{"addonId": "extra", "quantity": 2}],
        trialOverride={"disabled": True},
    )
    assert once["amountDueNow"] == 1500 - 300
    assert once["nextRecurringTotal"] == 1500
    assert [line["kind"] for line in once["linesDueNow"]] == ["PLAN", "ADDON", "DISCOUNT"]

    pro = await preview(api, planId="pro", unitQuantities=[{"featureId": "seats", "quantity": 3}])
    assert pro["amountDueNow"] == 3000 + 3 * 500
    arrears = [line for line in pro["recurringLines"] if line["inArrears"]]
    assert len(arrears) == 1
    assert arrears[0]["unitAmount"] == 2
    assert arrears[0]["amount"] == 0

    tiered = await preview(api, planId="tiered", unitQuantities=[{"featureId": "seats", "quantity": 7}])
    assert tiered["amountDueNow"] == 5 * 1000 + 2 * 800 + 100

    # Nothing was written.
    assert (await api.ok("get", "/subscriptions"))["data"] == []
    missing = await api.post("/subscriptions/preview", {"customerId": "acme", "planId": "nope"})
    assert problem_code(missing) == "plan_not_found"


async def test_change_previews_prorate(api: ApiEnv, catalog: CatalogFactory, database: Database) -> None:
    env_pk = await catalog.env_pk()
    t0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)  # a 30-day period
    async with database.session() as session:
        request = ProvisionRequest("acme", "basic", trial_override=TrialOverride(disabled=True))
        await provision_subscription(session, env_pk, request, now=t0)
    halfway = t0 + dt.timedelta(days=15)
    async with database.session() as session:
        up = await preview_subscription(
            session,
            env_pk,
            ProvisionRequest("acme", "pro", unit_quantities=[UnitQuantityInput("seats", 1)]),
            now=halfway,
        )
        same = await preview_subscription(session, env_pk, ProvisionRequest("acme", "basic"), now=halfway)
        more = await preview_subscription(
            session, env_pk, ProvisionRequest("acme", "basic", addons=[AddonInput("extra", 1)]), now=halfway
        )
    assert up.change_type == "UPGRADE"
    assert up.amount_due_now == 3500 // 2 - 1000 // 2
    assert [line.amount for line in up.lines_due_now] == [-500, 1750]
    assert up.next_recurring_total == 3500
    assert same.change_type == "NO_CHANGE"
    assert same.amount_due_now == 0
    assert more.change_type == "UPGRADE"
    assert more.amount_due_now == 125

    async with database.session() as session:
        request = ProvisionRequest("acme", "pro", unit_quantities=[UnitQuantityInput("seats", 2)])
        await provision_subscription(session, env_pk, request, now=halfway)
    async with database.session() as session:
        down = await preview_subscription(session, env_pk, ProvisionRequest("acme", "basic"), now=halfway)
    assert down.change_type == "DOWNGRADE"
    assert down.amount_due_now == 0
    assert down.effective_at == dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    assert down.next_recurring_total == 1000


async def test_change_preview_respects_coupon_duration(
    api: ApiEnv, catalog: CatalogFactory, database: Database
) -> None:
    env_pk = await catalog.env_pk()
    t0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    async with database.session() as session:
        request = ProvisionRequest(
            "acme", "basic", coupon_id="once", trial_override=TrialOverride(disabled=True)
        )
        await provision_subscription(session, env_pk, request, now=t0)
    halfway = t0 + dt.timedelta(days=15)
    async with database.session() as session:
        up = await preview_subscription(
            session, env_pk, ProvisionRequest("acme", "basic", addons=[AddonInput("extra", 2)]), now=halfway
        )
    # In the first period the ONCE coupon ($3 off) still applies to both sides of the proration.
    assert up.amount_due_now == (1500 - 300) // 2 - (1000 - 300) // 2
    # From the next period on it no longer does.
    assert up.next_recurring_total == 1500
