"""The catalog through the public API: happy paths, versioned prices, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiEnv, problem_code


async def seed_features(api: ApiEnv) -> None:
    await api.ok("post", "/features", {"id": "sso", "name": "SSO", "featureType": "BOOLEAN"})
    await api.ok(
        "post",
        "/features",
        {
            "id": "seats",
            "name": "Seats",
            "featureType": "METERED",
            "meterType": "FLUCTUATING",
            "unitSingular": "seat",
        },
    )
    await api.ok(
        "post",
        "/features",
        {"id": "api-calls", "name": "API calls", "featureType": "METERED", "meterType": "INCREMENTAL"},
    )
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})


def basic_plan(**extra: Any) -> dict[str, Any]:
    plan = {
        "id": "basic",
        "productId": "acme",
        "name": "Basic",
        "pricingType": "PAID",
        "entitlements": [
            {"featureId": "seats", "usageLimit": 5},
            {"featureId": "api-calls", "usageLimit": 1000, "resetPeriod": "MONTH"},
        ],
        "charges": [
            {"billingPeriod": "MONTHLY", "currency": "USD", "billingModel": "FLAT_FEE", "amount": 1000},
            {"billingPeriod": "ANNUALLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 10000},
        ],
    }
    plan.update(extra)
    return plan


async def test_feature_crud_and_pagination(api: ApiEnv) -> None:
    for i in range(5):
        await api.ok("post", "/features", {"id": f"f{i}", "name": f"F{i}", "featureType": "BOOLEAN"})
    first = await api.ok("get", "/features?limit=2")
    assert [f["id"] for f in first["data"]] == ["f4", "f3"]
    assert first["hasMore"] is True
    second = await api.ok("get", f"/features?limit=2&startingAfter={first['nextCursor']}")
    assert [f["id"] for f in second["data"]] == ["f2", "f1"]
    last = await api.ok("get", f"/features?limit=2&startingAfter={second['nextCursor']}")
    assert [f["id"] for f in last["data"]] == ["f0"] and last["hasMore"] is False
    updated = await api.ok("patch", "/features/f0", {"name": "Renamed"})
    assert updated["name"] == "Renamed" and updated["featureType"] == "BOOLEAN"
    archived = await api.ok("post", "/features/f0/archive", status=200)
    assert archived["status"] == "ARCHIVED"
    assert [f["id"] for f in (await api.ok("get", "/features?status=ARCHIVED"))["data"]] == ["f0"]


async def test_plan_with_parent_addons_and_publish(api: ApiEnv) -> None:
    await seed_features(api)
    await api.ok(
        "post",
        "/addons",
        {
            "id": "extra-seats",
            "productId": "acme",
            "name": "10 Seats",
            "maxQuantity": 5,
            "entitlements": [{"featureId": "seats", "usageLimit": 10}],
            "charges": [
                {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 500}
            ],
        },
    )
    basic = await api.ok("post", "/plans", basic_plan(compatibleAddonIds=["extra-seats"]))
    assert basic["status"] == "DRAFT" and basic["priceVersion"] == 1
    assert basic["charges"][0]["currency"] == "usd"
    assert basic["compatibleAddonIds"] == ["extra-seats"]
    pro = basic_plan(id="pro", name="Pro", parentPlanId="basic", entitlements=[{"featureId": "sso"}])
    response = await api.post("/plans/basic/publish")
    assert response.status_code == 200
    created = await api.ok("post", "/plans", pro)
    assert created["parentPlanId"] == "basic"
    published = await api.ok("post", "/plans/pro/publish", status=200)
    assert published["status"] == "PUBLISHED"
    addon = await api.ok("get", "/addons/extra-seats")
    assert addon["compatiblePlanIds"] == ["basic"]


async def test_price_change_of_published_plan_creates_new_version(api: ApiEnv) -> None:
    await seed_features(api)
    await api.ok("post", "/plans", basic_plan())
    # While a draft, prices are edited in place.
    draft = await api.ok(
        "patch",
        "/plans/basic",
        {
            "charges": [
                {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 1200}
            ]
        },
    )
    assert draft["priceVersion"] == 1 and draft["charges"][0]["amount"] == 1200
    await api.ok("post", "/plans/basic/publish", status=200)
    changed = await api.ok(
        "patch",
        "/plans/basic",
        {
            "charges": [
                {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 1500}
            ]
        },
    )
    assert changed["priceVersion"] == 2 and changed["charges"][0]["amount"] == 1500
    same = await api.ok("patch", "/plans/basic", {"name": "Basic 2", "charges": changed["charges"]})
    assert same["priceVersion"] == 2, "an unchanged price does not make a version"
    versions = await api.ok("get", "/plans/basic/price-versions")
    assert [(v["version"], v["charges"][0]["amount"]) for v in versions] == [(2, 1500), (1, 1200)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"pricingType": "FREE", "charges": basic_plan()["charges"]}, "charges_not_allowed"),
        (
            {
                "charges": [
                    {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": -1}
                ]
            },
            "invalid_request",
        ),
        (
            {
                "charges": [
                    {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 1},
                    {
                        "billingPeriod": "MONTHLY",
                        "currency": "eur",
                        "billingModel": "PER_UNIT",
                        "amount": 1,
                        "featureId": "seats",
                    },
                ]
            },
            "currency_mismatch",
        ),
        (
            {
                "charges": [
                    {"billingPeriod": "MONTHLY", "currency": "xyz", "billingModel": "FLAT_FEE", "amount": 1}
                ]
            },
            "invalid_currency",
        ),
        ({"billingPeriod": "WEEKLY"}, "invalid_request"),
        ({"entitlements": [{"featureId": "nope", "usageLimit": 1}]}, "feature_not_found"),
        ({"entitlements": [{"featureId": "sso", "usageLimit": 1}]}, "invalid_entitlement"),
        ({"entitlements": [{"featureId": "seats"}]}, "invalid_entitlement"),
        ({"entitlements": [{"featureId": "sso"}, {"featureId": "sso"}]}, "duplicate_entitlement"),
        ({"productId": "ghost"}, "product_not_found"),
        ({"parentPlanId": "ghost"}, "plan_not_found"),
        ({"pricingType": "FREE", "charges": [], "defaultTrial": {"durationDays": 7}}, "trial_not_allowed"),
        ({"unknownField": 1}, "invalid_request"),
        (
            {
                "charges": [
                    {
                        "billingPeriod": "MONTHLY",
                        "currency": "usd",
                        "billingModel": "TIERED",
                        "featureId": "seats",
                        "tiersMode": "VOLUME",
                        "tiers": [{"upTo": None, "unitAmount": 1}, {"upTo": 5, "unitAmount": 2}],
                    }
                ]
            },
            "invalid_charge",
        ),
    ],
)
async def test_plan_refusals_write_nothing(api: ApiEnv, body: dict[str, Any], code: str) -> None:
    await seed_features(api)
    plan = basic_plan()
    plan.update(body)
    if body.get("billingPeriod"):
        plan["charges"][0]["billingPeriod"] = body["billingPeriod"]
        del plan["billingPeriod"]
    response = await api.post("/plans", plan)
    assert 400 <= response.status_code < 500
    assert problem_code(response) == code
    assert (await api.get("/plans/basic")).status_code == 404


async def test_malformed_and_oversize_bodies(api: ApiEnv) -> None:
    broken = await api.client.post(
        "/api/v1/features",
        content=b'{"id": "x",',
        headers={**api.headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert problem_code(broken) in {"malformed_json", "invalid_request"}
    wrong_type = await api.post("/features", {"id": "x", "name": 5, "featureType": "BOOLEAN"})
    assert wrong_type.status_code == 400 and problem_code(wrong_type) == "invalid_request"
    huge = await api.client.post(
        "/api/v1/features",
        content=b'{"id": "x", "name": "' + b"a" * (3 * 1024 * 1024) + b'"}',
        headers={**api.headers, "content-type": "application/json"},
    )
    assert huge.status_code == 413 and problem_code(huge) == "request_too_large"
    duplicate = await api.post("/features", {"id": "dup", "name": "A", "featureType": "BOOLEAN"})
    assert duplicate.status_code == 201
    again = await api.post("/features", {"id": "dup", "name": "A", "featureType": "BOOLEAN"})
    assert again.status_code == 409 and problem_code(again) == "feature_exists"


async def test_keys_never_cross_environments(api: ApiEnv, other_api: ApiEnv) -> None:
    await seed_features(api)
    assert (await other_api.get("/features/sso")).status_code == 404
    assert (await other_api.ok("get", "/features"))["data"] == []
    no_key = await api.client.get("/api/v1/features")
    assert no_key.status_code == 401 and problem_code(no_key) == "missing_api_key"
    bad_key = await api.client.get("/api/v1/features", headers={"X-API-KEY": "tg_sk_forged"})
    assert bad_key.status_code == 401 and problem_code(bad_key) == "invalid_api_key"
    # The other environment can create the same ids: ids are per environment.
    await other_api.ok("post", "/features", {"id": "sso", "name": "Other SSO", "featureType": "BOOLEAN"})
    assert (await api.ok("get", "/features/sso"))["name"] == "SSO"


async def test_coupons(api: ApiEnv) -> None:
    pct = await api.ok(
        "post", "/coupons", {"id": "half", "name": "Half", "percentOff": 12.5, "duration": "FOREVER"}
    )
    assert pct["percentOff"] == 12.5
    amount = await api.ok(
        "post",
        "/coupons",
        {
            "id": "ten",
            "name": "Ten",
            "amountOff": 1000,
            "currency": "EUR",
            "duration": "REPEATING",
            "durationInMonths": 3,
        },
    )
    assert amount["currency"] == "eur"
    for body, code in [
        ({"id": "a", "name": "A", "duration": "ONCE"}, "invalid_discount"),
        ({"id": "a", "name": "A", "duration": "ONCE", "percentOff": 12.345}, "invalid_percent_off"),
        ({"id": "a", "name": "A", "duration": "ONCE", "percentOff": 101}, "invalid_percent_off"),
        ({"id": "a", "name": "A", "duration": "ONCE", "amountOff": 5}, "currency_required"),
        ({"id": "a", "name": "A", "duration": "REPEATING", "percentOff": 5}, "invalid_duration"),
    ]:
        response = await api.post("/coupons", body)
        assert response.status_code == 400, body
        assert problem_code(response) == code
    assert (await api.ok("post", "/coupons/half/archive", status=200))["status"] == "ARCHIVED"
