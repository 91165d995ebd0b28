"""Widgets and billing: a paid plan goes through Stripe Checkout back to the host page, the
host page's address is checked before it becomes a return URL, and "Manage billing" opens
the Billing Portal. Stripe is the test run's sandbox, reached over HTTP by the official SDK."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.billing.models import CheckoutSession
from app.db import Database
from app.subscriptions.models import Subscription
from tests.conftest import problem_code
from tests.support.billing import browse, path_of, pay, query_of
from tests.support.widget_browser import Seeded, add_customer, seed_catalog

HTMX = {"HX-Request": "true"}
HOST = "https://app.example.com"
HOST_URL = f"{HOST}/settings/billing?tab=plans"


@pytest.fixture
async def shop(client: AsyncTestClient[Litestar], database: Database) -> tuple[Seeded, dict[str, str]]:
    seeded = await seed_catalog(database, allowed_origins=[HOST])
    tokens: dict[str, str] = {}
    for name in ("alice", "bob"):
        _, tokens[name] = await add_customer(database, seeded, name)
    return seeded, tokens


async def _connect(client: AsyncTestClient[Litestar], seeded: Seeded) -> None:
    response = await client.put(
        "/api/v1/integrations/stripe", json={"mode": "SANDBOX"}, headers={"X-API-KEY": seeded.server_key}
    )
    assert response.status_code == 200, response.text


def _query(seeded: Seeded, customer: str, token: str, **extra: str) -> dict[str, str]:
    return {
        "publishable-key": seeded.publishable_key,
        "customer-id": customer,
        "customer-token": token,
        "host-origin": HOST,
        "host-url": HOST_URL,
        **extra,
    }


async def _form(client: AsyncTestClient[Litestar], query: dict[str, str], widget: str) -> dict[str, str]:
    page = await client.get(f"/widgets/{widget}", params=query)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return {**query, "csrf": match.group(1)}


async def _count(database: Database, model: Any, environment_pk: int) -> int:
    async with database.session() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.environment_pk == environment_pk)
            )
            or 0
        )


def _navigate(response: Any) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["hx-reswap"] == "none"
    return json.loads(response.headers["hx-trigger"])["tollgate:navigate"]["url"]


async def test_paid_plan_goes_through_checkout_and_back_to_the_host_page(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    await _connect(client, seeded)
    query = _query(seeded, "alice", tokens["alice"])
    form = await _form(client, query, "paywall")
    # Never billed: no Stripe customer yet, so no "Manage billing" to offer.
    assert "manage-billing" not in (await client.get("/widgets/portal", params=query)).text

    # Team has no trial: confirmed, it waits for payment and the host is sent to Checkout.
    choose = {**form, "plan-id": "team", "action": "subscribe", "billing-period": "MONTHLY", "confirm": "1"}
    url = _navigate(await client.post("/widgets/actions/select-plan", data=choose, headers=HTMX))
    async with database.session() as session:
        sub = await session.scalar(select(Subscription).where(Subscription.environment_pk == seeded.env.pk))
        row = await session.scalar(select(CheckoutSession).where(CheckoutSession.url == url))
    assert sub is not None and sub.status.value == "PAYMENT_PENDING"
    assert row is not None
    assert row.success_url == HOST_URL + "&tollgate_checkout=success"
    assert row.cancel_url == HOST_URL + "&tollgate_checkout=cancel"

    # Paid on the sandbox's hosted page: Stripe sends the browser to Tollgate, then to the host.
    paid = await pay(url)
    assert paid.status_code == 303, paid.text
    back = await client.get(path_of(paid.headers["location"]), follow_redirects=False)
    assert back.status_code == 303
    returned = back.headers["location"]
    assert returned.startswith(HOST_URL)
    assert query_of(returned) == {
        "tab": "plans",
        "tollgate_checkout": "success",
        "checkoutCompleted": "true",
        "subscriptionId": sub.ref,
    }

    # The host page loads again; tollgate.js hands the marker to the frame, which shows the plan.
    page = await client.get(
        "/widgets/portal",
        params={**query, "checkout-result": "success", "checkout-subscription": sub.ref},
    )
    assert "Payment received: you are now on Team." in page.text
    event = re.search(r"data-checkout-event='([^']+)'", page.text)
    assert event and json.loads(event.group(1)) == {
        "subscriptionId": sub.ref,
        "planId": "team",
        "status": "ACTIVE",
        "completed": True,
    }
    assert '<h2 class="tg-plan-name" id="tg-sub-1">Team</h2>' in page.text
    assert "/widgets/actions/manage-billing" in page.text  # billed now
    # The checkout widget, when it is the page's only customer widget, says it too.
    checkout = await client.get(
        "/widgets/checkout",
        params={**query, "plan-id": "team", "checkout-result": "success", "checkout-subscription": sub.ref},
    )
    assert "Payment received: you are now on Team." in checkout.text

    # Manage billing: a Billing Portal session returning to the host page.
    portal = _navigate(await client.post("/widgets/actions/manage-billing", data=form, headers=HTMX))
    assert "/portal/bps_" in portal, portal
    hosted = await browse("GET", portal)
    assert hosted.status_code == 200 and f'href="{HOST_URL.replace("&", "&amp;")}"' in hosted.text


async def test_cancelled_checkout_changes_nothing(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    await _connect(client, seeded)
    query = _query(seeded, "bob", tokens["bob"])
    form = await _form(client, query, "paywall")
    choose = {**form, "plan-id": "team", "action": "subscribe", "billing-period": "MONTHLY", "confirm": "1"}
    _navigate(await client.post("/widgets/actions/select-plan", data=choose, headers=HTMX))
    async with database.session() as session:
        ref = await session.scalar(
            select(Subscription.ref).where(Subscription.environment_pk == seeded.env.pk)
        )
    assert ref is not None
    page = await client.get(
        "/widgets/paywall", params={**query, "checkout-result": "cancel", "checkout-subscription": ref}
    )
    assert "Checkout was cancelled: nothing changed." in page.text
    async with database.session() as session:
        status = await session.scalar(select(Subscription.status).where(Subscription.ref == ref))
    assert status is not None and status.value == "CANCELED"
    # Another customer's subscription id in the marker says nothing about it.
    other = await client.get(
        "/widgets/paywall",
        params={
            **_query(seeded, "alice", tokens["alice"]),
            "checkout-result": "success",
            "checkout-subscription": ref,
        },
    )
    assert other.status_code == 200 and "data-checkout-event" not in other.text


@pytest.mark.parametrize(
    "host_url",
    [
        "https://evil.example/phish",  # another origin
        "https://app.example.com.evil.example/",  # a look-alike host
        "javascript:alert(1)",
        "http://app.example.com/settings",  # same host, other scheme: another origin
    ],
)
async def test_a_host_url_outside_the_allowed_origins_is_refused_and_creates_nothing(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]], host_url: str
) -> None:
    seeded, tokens = shop
    await _connect(client, seeded)
    form = await _form(client, _query(seeded, "alice", tokens["alice"]), "paywall")
    for action, extra in [
        ("select-plan", {"plan-id": "team", "action": "subscribe", "confirm": "1"}),
        ("checkout", {"plan-id": "team", "unit.seats": "3"}),
        ("manage-billing", {}),
    ]:
        response = await client.post(
            f"/widgets/actions/{action}", data={**form, **extra, "host-url": host_url}, headers=HTMX
        )
        assert response.status_code == 403, (action, response.text)
        assert problem_code(response) == "host_url_not_allowed"
        assert "hx-trigger" not in response.headers
    assert await _count(database, Subscription, seeded.env.pk) == 0
    assert await _count(database, CheckoutSession, seeded.env.pk) == 0


async def test_manage_billing_refusals(
    client: AsyncTestClient[Litestar], shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    form = await _form(client, _query(seeded, "alice", tokens["alice"]), "paywall")
    no_token = {k: v for k, v in form.items() if k != "customer-token"}
    no_customer = {k: v for k, v in form.items() if k not in ("customer-token", "customer-id")}
    cases = [
        (no_token, 401, "missing_customer_token"),
        (no_customer, 401, "customer_required"),
        ({**form, "csrf": "1.forged"}, 403, "invalid_csrf_token"),
        (form, 404, "integration_not_found"),  # Stripe is not connected
    ]
    for data, status, code in cases:
        response = await client.post("/widgets/actions/manage-billing", data=data, headers=HTMX)
        assert (response.status_code, problem_code(response)) == (status, code), response.text
    await _connect(client, seeded)
    never_billed = await client.post("/widgets/actions/manage-billing", data=form, headers=HTMX)
    assert (never_billed.status_code, problem_code(never_billed)) == (422, "customer_not_billed")


async def test_without_a_host_url_checkout_returns_to_tollgates_own_page(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    await _connect(client, seeded)
    query = {k: v for k, v in _query(seeded, "alice", tokens["alice"]).items() if k != "host-url"}
    form = await _form(client, query, "paywall")
    choose = {**form, "plan-id": "team", "action": "subscribe", "billing-period": "MONTHLY", "confirm": "1"}
    url = _navigate(await client.post("/widgets/actions/select-plan", data=choose, headers=HTMX))
    async with database.session() as session:
        row = await session.scalar(select(CheckoutSession).where(CheckoutSession.url == url))
    assert row is not None
    assert row.success_url == "http://testserver.local/widgets/returned?" + urlencode(
        {"tollgate_checkout": "success"}
    )
    page = await client.get("/widgets/returned", params={"tollgate_checkout": "cancel"})
    assert page.status_code == 200 and "nothing changed" in page.text


async def test_a_free_customer_upgrading_sees_the_payment_checkout_will_take(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str]]
) -> None:
    seeded, tokens = shop
    await _connect(client, seeded)
    query = _query(seeded, "alice", tokens["alice"])
    form = await _form(client, query, "paywall")
    free = {**form, "plan-id": "free", "action": "subscribe", "billing-period": "MONTHLY", "confirm": "1"}
    assert (await client.post("/widgets/actions/select-plan", data=free, headers=HTMX)).status_code == 200

    # Team (no trial) from Free, no card on file: not a prorated upgrade but a new paid subscription.
    pick = {**form, "plan-id": "team", "action": "upgrade", "billing-period": "MONTHLY"}
    confirm = await client.post("/widgets/actions/select-plan", data=pick, headers=HTMX)
    assert confirm.status_code == 200, confirm.text
    assert 'data-change-type="UPGRADE"' in confirm.text
    assert "Continue to payment" in confirm.text and "Upgrade now" not in confirm.text
    due = re.search(r'data-testid="due-now"[^>]*>([^<]+)<', confirm.text)
    assert due is not None and due.group(1).strip() == "$36", "3 seats × $12, a full period"
    url = _navigate(
        await client.post("/widgets/actions/select-plan", data={**pick, "confirm": "1"}, headers=HTMX)
    )
    assert "/checkout/cs_" in url
    async with database.session() as session:
        statuses = sorted(
            (
                await session.scalars(
                    select(Subscription.status).where(Subscription.environment_pk == seeded.env.pk)
                )
            ).all()
        )
    assert [s.value for s in statuses] == ["ACTIVE", "PAYMENT_PENDING"], "Free keeps granting until paid"
