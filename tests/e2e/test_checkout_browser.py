"""In Chromium, through the sandbox's hosted pages: Checkout (paid and declined), the Billing
Portal hand-off, and reconnecting Stripe.

Tollgate runs as a real HTTP server here (the browser follows Stripe's redirects back to it).
Until the sync branch brings `POST /webhooks/stripe/{id}`, this module mounts a minimal
receiver on the test server only: it verifies the signature and dispatches to the handlers
registered with `app.billing.events.handles`, as the real endpoint's processor will.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import stripe
from litestar import MediaType, Request, get, post
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import select

from app.billing import checkout as _checkout  # noqa: F401  (registers the checkout handlers)
from app.billing.events import EventContext, handlers_for
from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration
from app.db import Database
from app.environments.models import Environment
from app.environments.service import EnvironmentRef
from app.main import create_app
from app.settings import Settings
from tests.conftest import ApiEnv
from tests.support.billing import DECLINED_CARD, GOOD_CARD, query_of, stripe_for
from tests.support.catalog_factory import CatalogFactory, flat, per_unit
from tests.support.sandbox import RunningSandbox, free_port, new_test_key, serve_asgi

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (make browser)"),
]


@dataclass
class LiveServer:
    url: str
    settings: Settings
    processed: list[str] = field(default_factory=list)


def _test_routes(live: LiveServer, database: Database) -> list[Any]:
    @post("/webhooks/stripe/{integration_ref:str}", status_code=200)
    async def receive(request: Request[Any, Any, Any], integration_ref: str) -> dict[str, str]:
        body = await request.body()
        async with database.session() as session:
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.ref == integration_ref)
            )
            assert row is not None
            service = IntegrationService(session, live.settings)
            stripe.Webhook.construct_event(
                body.decode(), request.headers["stripe-signature"], service.webhook_secret(row) or ""
            )
            event = json.loads(body)
            slug = await session.scalar(select(Environment.slug).where(Environment.pk == row.environment_pk))
            ctx = EventContext(
                session,
                live.settings,
                EnvironmentRef(row.environment_pk, str(slug)),
                row,
                service.client(row),
            )
            for handler in handlers_for(event["type"]):
                await handler(ctx, event)
                live.processed.append(event["type"])
        return {"status": "ok"}

    @get("/host/{page:str}", media_type=MediaType.HTML)
    async def host_page(page: str) -> str:
        """The host application's own page the customer returns to."""
        return f"<h1 id='host'>host {page}</h1>"

    return [receive, host_page]


@pytest.fixture(scope="module")
def live(settings: Settings, database: Database) -> Iterator[LiveServer]:
    if not settings.is_sqlite:
        pytest.skip("browser tests run once, on SQLite (the API tests cover PostgreSQL)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    live_settings = msgspec.structs.replace(
        settings,
        public_url=url,
        stripe_connect_client_id="ca_tollgate_e2e",
        stripe_connect_secret_key=new_test_key(),
    )
    server = LiveServer(url, live_settings)
    app = create_app(live_settings)
    for handler in _test_routes(server, database):
        app.register(handler)
    with serve_asgi(app, port):
        yield server


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def live_api(api: ApiEnv, live: LiveServer) -> AsyncIterator[ApiEnv]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        yield ApiEnv(client, api.created)  # type: ignore[arg-type]  # same calls, over HTTP


@pytest.fixture
async def catalog(live_api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, live_api)
    await f.product("app")
    await f.feature("seats", "METERED", "FLUCTUATING")
    await f.feature("sso")
    await f.plan(
        "pro",
        entitlements={"sso": {}, "seats": {"limit": 10}},
        charges=[flat(3000), per_unit(700, "seats", min=1, max=50)],
    )
    await f.customer("acme")
    await f.customer("bravo")
    await live_api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    return f


async def _provision(api: ApiEnv, live: LiveServer, customer: str) -> dict[str, Any]:
    result = await api.ok(
        "post",
        "/subscriptions",
        {
            "customerId": customer,
            "planId": "pro",
            "unitQuantities": [{"featureId": "seats", "quantity": 2}],
            "checkoutOptions": {
                "successUrl": f"{live.url}/host/done",
                "cancelUrl": f"{live.url}/host/pricing",
            },
        },
    )
    assert result["status"] == "PAYMENT_REQUIRED"
    return result


def _wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def test_checkout_pay_decline_portal_reconnect(
    live_api: ApiEnv,
    live: LiveServer,
    catalog: CatalogFactory,
    browser: Browser,
    database: Database,
    stripe_sandbox: RunningSandbox,
) -> None:
    page = await browser.new_page()
    page.set_default_timeout(15000)

    # Declined card: the page says so, the subscription keeps waiting; going back says not completed.
    declined = await _provision(live_api, live, "bravo")
    await page.goto(declined["checkoutUrl"])
    await page.fill("#card_number", DECLINED_CARD)
    await page.click("#submit")
    await expect(page.locator("#error")).to_contain_text("declined")
    status = await live_api.ok("get", f"/subscriptions/{declined['subscription']['id']}/checkout-status")
    assert status["status"] == "PENDING" and status["subscription"]["status"] == "PAYMENT_PENDING"
    await page.click("#cancel-link")
    await expect(page.locator("#host")).to_have_text("host pricing")
    assert query_of(page.url) == {
        "checkoutCompleted": "false",
        "subscriptionId": declined["subscription"]["id"],
    }

    # Paid: back on the host's page with the result; the completion event is processed too.
    paid = await _provision(live_api, live, "acme")
    sub_id = paid["subscription"]["id"]
    await page.goto(paid["checkoutUrl"])
    await expect(page.locator("#submit")).to_have_text("Subscribe")
    assert await page.locator("#email").count() == 0, "the Stripe customer exists: no email asked"
    await page.fill("#card_number", GOOD_CARD)
    await page.fill("#name", "Ada Acme")
    await page.click("#submit")
    await expect(page.locator("#host")).to_have_text("host done")
    assert query_of(page.url) == {"checkoutCompleted": "true", "subscriptionId": sub_id}
    stripe_sandbox.control.drain()
    _wait_for(lambda: "checkout.session.completed" in live.processed)
    assert (await live_api.ok("get", f"/subscriptions/{sub_id}"))["status"] == "ACTIVE"
    assert (await live_api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True
    assert (await live_api.ok("get", f"/subscriptions/{sub_id}/checkout-status"))["status"] == "COMPLETED"

    # Billing Portal: change the card, then back to the host's page.
    portal = await live_api.ok(
        "post", "/customers/acme/billing-portal", {"returnUrl": f"{live.url}/host/account"}
    )
    await page.goto(portal["url"])
    await page.fill("#card_number", "5555555555554444")
    await page.click("text=Update payment method")
    await expect(page.locator("body")).to_contain_text("4444")
    client = await stripe_for(database, live.settings, catalog)
    stripe_customer = client.v1.customers.list(params={"limit": 5}).data
    acme = next(c for c in stripe_customer if c.metadata and c.metadata["tollgateEntityId"] == "acme")
    assert acme.invoice_settings is not None and acme.invoice_settings.default_payment_method
    card = client.v1.payment_methods.retrieve(str(acme.invoice_settings.default_payment_method)).card
    assert card is not None and card.last4 == "4444"
    await page.click("#return-link")
    await expect(page.locator("#host")).to_have_text("host account")

    # Remove and reconnect: same account, a new webhook endpoint, the hand-off still works.
    before = await live_api.ok("get", "/integrations/stripe")
    await live_api.ok("delete", "/integrations/stripe", status=200)
    missing = await live_api.post("/customers/acme/billing-portal", {"returnUrl": f"{live.url}/host/account"})
    assert missing.status_code == 404
    after = await live_api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    assert after["accountId"] == before["accountId"]
    assert after["webhookEndpointId"] != before["webhookEndpointId"]
    again = await live_api.ok(
        "post", "/customers/acme/billing-portal", {"returnUrl": f"{live.url}/host/account"}
    )
    assert again["url"].startswith(stripe_sandbox.base_url)
    await page.close()


async def test_connect_with_stripe_in_the_browser(
    live_api: ApiEnv, live: LiveServer, browser: Browser
) -> None:
    page = await browser.new_page()
    page.set_default_timeout(15000)
    return_url = f"{live.url}/host/settings"
    started = await live_api.ok("get", f"/integrations/stripe/oauth/start?mode=TEST&returnUrl={return_url}")
    await page.goto(started["url"])
    await page.fill("#business_name", "Browser Connected Ltd")
    await page.click("#approve")
    await expect(page.locator("#host")).to_have_text("host settings")
    result = query_of(page.url)
    assert result["stripeConnected"] == "true"
    integration = await live_api.ok("get", "/integrations/stripe")
    assert integration["integrationId"] == result["integrationId"]
    assert integration["mode"] == "TEST" and integration["accountName"] == "Browser Connected Ltd"

    # A Live connection with the sandbox's test key is refused, like pasting the wrong key.
    await live_api.ok("delete", "/integrations/stripe", status=200)
    started = await live_api.ok("get", f"/integrations/stripe/oauth/start?mode=LIVE&returnUrl={return_url}")
    await page.goto(started["url"])
    await page.click("#approve")
    await expect(page.locator("#host")).to_have_text("host settings")
    assert query_of(page.url) == {"stripeConnected": "false", "error": "stripe_key_mode_mismatch"}
    assert (await live_api.get("/integrations/stripe")).status_code == 404
    await page.close()
