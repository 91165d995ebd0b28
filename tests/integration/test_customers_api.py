from __future__ import annotations

import time

from app.core.keys import hash_key, sign_customer_token, verify_customer_token
from tests.conftest import ApiEnv, problem_code


async def test_upsert_is_idempotent_on_id(api: ApiEnv) -> None:
    body = {
        "id": "cus-1",
        "name": "Ada",
        "email": "ada@example.com",
        "billingInfo": {
            "address": {"country": "GB", "city": "London"},
            "taxIds": [{"type": "gb_vat", "value": "GB1"}],
        },
        "metadata": {"tier": "gold"},
    }
    first = await api.post("/customers", body)
    assert first.status_code == 201
    again = await api.post("/customers", {**body, "name": "Ada L."})
    assert again.status_code == 200 and again.json()["name"] == "Ada L."
    got = await api.ok("get", "/customers/cus-1")
    assert got["billingInfo"]["address"]["country"] == "GB"
    assert got["billingInfo"]["taxIds"] == [{"type": "gb_vat", "value": "GB1"}]
    listed = await api.ok("get", "/customers?search=ada")
    assert [c["id"] for c in listed["data"]] == ["cus-1"]
    patched = await api.ok("patch", "/customers/cus-1", {"email": "ada@lovelace.dev", "currency": "GBP"})
    assert (
        patched["email"] == "ada@lovelace.dev"
        and patched["currency"] == "gbp"
        and patched["name"] == "Ada L."
    )


async def test_customer_refusals(api: ApiEnv) -> None:
    for body, code in [
        ({"id": "c", "email": "not-an-email"}, "invalid_request"),
        ({"id": "c", "couponId": "ghost"}, "coupon_not_found"),
        ({"id": "c", "currency": "ZZZ"}, "invalid_currency"),
        ({"id": "c", "billingInfo": {"address": {"country": "gb"}}}, "invalid_request"),
        ({"id": ""}, "invalid_request"),
    ]:
        response = await api.post("/customers", body)
        assert 400 <= response.status_code < 500, body
        assert problem_code(response) == code
    assert (await api.get("/customers/c")).status_code == 404


async def test_customer_token_matches_documented_formula(api: ApiEnv) -> None:
    await api.ok("post", "/customers", {"id": "cus-t"})
    minted = await api.ok("post", "/customers/cus-t/token", {"expiresIn": 600}, status=201)
    key = hash_key(api.created.server_key).encode()
    assert verify_customer_token(key, "cus-t", minted["token"])
    assert not verify_customer_token(key, "someone-else", minted["token"])
    expires_at = int(minted["token"].split(".")[0])
    assert abs(expires_at - (time.time() + 600)) < 5
    assert minted["token"] == sign_customer_token(key, "cus-t", expires_at)
    expired = sign_customer_token(key, "cus-t", int(time.time()) - 1)
    assert not verify_customer_token(key, "cus-t", expired)
    missing = await api.post("/customers/ghost/token")
    assert missing.status_code == 404 and problem_code(missing) == "customer_not_found"
