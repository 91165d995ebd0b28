"""Who may see and act through the widgets: keys, customer tokens, CSRF, framing, injection."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.keys import sign_customer_token
from app.db import Database
from tests.conftest import problem_code
from tests.support.widget_browser import Seeded, add_customer, add_subscription, seed_catalog

HOST = "https://host.example"
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def shop(database: Database) -> tuple[Seeded, dict[str, str]]:
    seeded = await seed_catalog(
        database, allowed_origins=[HOST, "javascript:alert(1)", "https://x.example; script-src *"]
    )
    tokens = {}
    payer, tokens["payer"] = await add_customer(database, seeded, "payer")
    await add_subscription(database, seeded, payer, "pro", usage={"seats": 3})
    _, tokens["nosub"] = await add_customer(database, seeded, "nosub")
    return seeded, tokens


def _query(
    seeded: Seeded, customer: str | None = None, token: str | None = None, **extra: str
) -> dict[str, str]:
    query = {"publishable-key": seeded.publishable_key, **extra}
    if customer is not None:
        query["customer-id"] = customer
    if token is not None:
        query["customer-token"] = token
    return query


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def test_pages_carry_a_strict_csp_and_no_inline_script_or_style(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    for path, query in [
        ("/widgets/paywall", _query(seeded, "payer", tokens["payer"], **{"host-origin": HOST})),
        ("/widgets/portal", _query(seeded, "payer", tokens["payer"])),
        ("/widgets/checkout", _query(seeded, "payer", tokens["payer"], **{"plan-id": "pro"})),
    ]:
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        ancestors = csp.split("frame-ancestors ")[1]
        # Allowed origins, the instance itself; malformed entries never reach the header.
        assert ancestors == f"'self' http://testserver.local {HOST}"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert " style=" not in html, "style attributes are blocked by the CSP"
        assert f'data-host-origin="{HOST}"' in html or path != "/widgets/paywall"
        # No secret ever reaches the browser.
        assert seeded.server_key not in html and "widget-test-secret" not in html


async def test_unknown_or_missing_publishable_key(
    client: AsyncTestClient[Litestar], database: Database
) -> None:
    for params, code in [
        ({}, "missing_publishable_key"),
        ({"publishable-key": "tg_pk_nope"}, "invalid_publishable_key"),
    ]:
        page = await client.get("/widgets/paywall", params=params)
        assert page.status_code == 401
        assert f'data-error-code="{code}"' in page.text
        # The error page shows only the reason, so any page may frame it and learn its key is wrong.
        assert page.headers["content-security-policy"].endswith("frame-ancestors *")
        fragment = await client.get("/widgets/paywall", params=params, headers=HTMX)
        assert fragment.status_code == 401 and problem_code(fragment) == code


async def test_refused_customer_tokens(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    # The same customer id in another environment: its token is signed with another key.
    elsewhere = await seed_catalog(database)
    _, foreign = await add_customer(database, elsewhere, "payer")
    good = tokens["payer"]
    cases = {
        "missing": (None, 401, "missing_customer_token"),
        "forged": (good.split(".")[0] + "." + "A" * 43, 403, "invalid_customer_token"),
        "expired": (sign_customer_token(b"k", "payer", int(time.time()) - 1), 403, "invalid_customer_token"),
        "longer-expiry": (
            str(int(good.split(".")[0]) + 1) + "." + good.split(".")[1],
            403,
            "invalid_customer_token",
        ),
        "other customer's": (tokens["nosub"], 403, "invalid_customer_token"),
        "other environment's": (foreign, 403, "invalid_customer_token"),
        "garbage": ("not-a-token", 403, "invalid_customer_token"),
    }
    for label, (token, status, code) in cases.items():
        for path in ("/widgets/paywall", "/widgets/portal"):
            page = await client.get(path, params=_query(seeded, "payer", token))
            assert page.status_code == status, (label, path)
            assert f'data-error-code="{code}"' in page.text, label
            for private in ("Current plan", "Renews on", "seats", good):
                assert private not in page.text, (label, private)
            fragment = await client.get(path, params=_query(seeded, "payer", token), headers=HTMX)
            assert fragment.status_code == status and problem_code(fragment) == code
    # The portal always needs a customer.
    page = await client.get("/widgets/portal", params=_query(seeded))
    assert page.status_code == 401 and 'data-error-code="customer_required"' in page.text
    unknown = sign_customer_token((await _signing_key(database, seeded)), "ghost", int(time.time()) + 60)
    page = await client.get("/widgets/portal", params=_query(seeded, "ghost", unknown))
    assert page.status_code == 404 and 'data-error-code="customer_not_found"' in page.text


async def _signing_key(database: Database, seeded: Seeded) -> bytes:
    from app.customers.service import token_signing_key

    async with database.session() as session:
        return await token_signing_key(session, seeded.env)


async def test_embedding_from_an_origin_that_is_not_allowed_is_refused(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    page = await client.get(
        "/widgets/paywall",
        params=_query(seeded, "payer", tokens["payer"], **{"host-origin": "https://evil.example"}),
    )
    assert page.status_code == 403 and 'data-error-code="origin_not_allowed"' in page.text
    assert "data-host-origin" not in page.text  # nothing is posted to that origin
    assert "evil.example" not in page.headers["content-security-policy"]


async def _form(
    client: AsyncTestClient[Litestar], seeded: Seeded, customer: str, token: str
) -> dict[str, str]:
    page = await client.get("/widgets/paywall", params=_query(seeded, customer, token))
    assert page.status_code == 200
    return {
        "publishable-key": seeded.publishable_key,
        "customer-id": customer,
        "customer-token": token,
        "csrf": _csrf(page.text),
        "plan-id": "team",
        "billing-period": "ANNUALLY",
        "action": "upgrade",
    }


async def test_select_plan_needs_a_csrf_token_bound_to_the_customer(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    form = await _form(client, seeded, "payer", tokens["payer"])
    # A custom plan is only described to the host (Contact us); nothing is provisioned.
    custom = {**form, "plan-id": "enterprise", "action": "contact"}
    ok = await client.post("/widgets/actions/select-plan", data=custom, headers=HTMX)
    assert ok.status_code == 200, ok.text
    import json

    trigger = json.loads(ok.headers["hx-trigger"])
    assert trigger == {
        "tollgate:plan-selected": {
            "planId": "enterprise",
            "planName": "Enterprise",
            "pricingType": "CUSTOM",
            "billingPeriod": "ANNUALLY",
            "action": "contact",
            "customerId": "payer",
            "provisioned": False,
        }
    }
    assert ok.headers["hx-reswap"] == "none"
    same_origin = await client.post(
        "/widgets/actions/select-plan", data=form, headers={**HTMX, "Origin": "http://testserver.local"}
    )
    # A paid change asks for confirmation first, with the preview; nothing is sent to the host yet.
    assert same_origin.status_code == 200 and 'data-change-type="BILLING_PERIOD_CHANGE"' in same_origin.text
    assert "hx-trigger" not in same_origin.headers
    # Without script: back to the plans.
    plain = await client.post("/widgets/actions/select-plan", data=custom, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"].startswith("/widgets/paywall?")

    other = await _form(client, seeded, "nosub", tokens["nosub"])
    refusals: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"csrf": ""}, {}, 403, "invalid_csrf_token"),
        ({"csrf": "123.abc"}, {}, 403, "invalid_csrf_token"),
        ({"csrf": other["csrf"]}, {}, 403, "invalid_csrf_token"),  # another customer's form
        ({}, {"Origin": "https://evil.example"}, 403, "invalid_csrf_token"),
        ({"customer-token": tokens["nosub"]}, {}, 403, "invalid_customer_token"),
        ({"customer-token": ""}, {}, 401, "missing_customer_token"),
        ({"plan-id": "ghost"}, {}, 404, "plan_not_found"),
        ({"plan-id": ""}, {}, 400, "plan_required"),
    ]
    for change, headers, status, code in refusals:
        response = await client.post(
            "/widgets/actions/select-plan", data={**form, **change}, headers={**HTMX, **headers}
        )
        assert response.status_code == status, (change, response.text)
        assert problem_code(response) == code
        assert "hx-trigger" not in response.headers


async def test_billing_portal_is_checked_then_needs_a_connected_stripe(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    form = await _form(client, seeded, "payer", tokens["payer"])
    refused = await client.post("/widgets/actions/manage-billing", data={**form, "csrf": "x"}, headers=HTMX)
    assert refused.status_code == 403 and problem_code(refused) == "invalid_csrf_token"
    response = await client.post("/widgets/actions/manage-billing", data=form, headers=HTMX)
    assert response.status_code == 404 and problem_code(response) == "integration_not_found"


async def test_theme_values_and_texts_cannot_inject(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, _ = shop
    page = await client.get(
        "/widgets/paywall",
        params=_query(
            seeded,
            **{
                "c.color-primary": "red;}body{display:none",
                "c.color-text": "#112233",
                "c.radius": "6",
                "c.font-family": "</style><script>alert(1)</script>",
                "t.paywall_title": "<img src=x onerror=alert(1)>",
                "t.unknown_key": "ignored",
                "theme": "dark",
            },
        ),
    )
    html = page.text
    assert "display:none" not in html and "<script>alert" not in html
    assert ":root{--tg-text:#112233;--tg-radius:6px}" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert 'data-theme="dark"' in html
    nonce = re.search(r'<style nonce="([^"]+)">', html)
    assert nonce and f"'nonce-{nonce.group(1)}'" in page.headers["content-security-policy"]
