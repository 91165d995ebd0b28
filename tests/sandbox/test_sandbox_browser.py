"""The hosted Checkout, Billing Portal and OAuth pages in a real browser (headless Chromium)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import stripe

from tests.support.sandbox import RunningSandbox

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    print(f"browser tests skipped: {CHROMIUM} is not installed (run `make browser`)")
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


def _price(client: stripe.StripeClient, name: str, amount: int) -> stripe.Price:
    product = client.v1.products.create(params={"name": name})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
    )


def test_checkout_declines_then_pays(
    page: Page, client: stripe.StripeClient, sandbox_server: RunningSandbox
) -> None:
    price = _price(client, "Browser plan", 1200)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 2}],
            "success_url": f"{sandbox_server.base_url}/dashboard?paid={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{sandbox_server.base_url}/dashboard",
        }
    )
    page.goto(str(session.url))
    assert page.locator("#total").inner_text() == "$24.00"
    assert "Browser plan" in page.locator("#line-items").inner_text()
    page.fill("#email", "browser@example.com")
    page.fill("#card_number", "4000 0000 0000 0002")
    page.fill("#address_country", "US")
    page.click("#submit")
    assert page.locator("#error").inner_text() == "Your card was declined."
    page.fill("#card_number", "4242 4242 4242 4242")
    page.click("#submit")
    page.wait_for_url(f"**paid={session.id}")
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete"
    assert client.v1.subscriptions.retrieve(str(done.subscription)).status == "active"


def test_portal_cancel_and_update_card(
    page: Page, client: stripe.StripeClient, sandbox_server: RunningSandbox
) -> None:
    price = _price(client, "Portal plan", 1500)
    customer = client.v1.customers.create(
        params={
            "email": "portal@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": f"{sandbox_server.base_url}/dashboard"}
    )
    page.goto(str(session.url))
    assert page.locator("#return-link").get_attribute("href") == f"{sandbox_server.base_url}/dashboard"
    assert "Visa •••• 4242" in page.locator("#current-payment-method").inner_text()
    assert page.locator("#invoices tbody tr").count() == 1
    page.fill("#card_number", "5555 5555 5555 4444")
    page.click("text=Update payment method")
    assert "Mastercard •••• 4444" in page.locator("#current-payment-method").inner_text()
    page.click("text=Cancel plan")
    page.wait_for_selector("text=Renew plan")
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True


def test_oauth_consent_returns_a_code(page: Page, sandbox_server: RunningSandbox, api_key: str) -> None:
    platform = sandbox_server.client(api_key, client_id="ca_browser_platform")
    redirect = f"{sandbox_server.base_url}/dashboard"
    page.goto(
        platform.oauth.authorize_url(params={"scope": "read_write", "redirect_uri": redirect, "state": "st8"})
    )
    permissions = page.locator("#permissions li").all_inner_texts()
    assert any("customers" in p for p in permissions)
    page.fill("#business_name", "Browser Co")
    page.click("#approve")
    page.wait_for_url(f"{redirect}?**")
    query = parse_qs(urlparse(page.url).query)
    assert query["state"] == ["st8"]
    token = platform.oauth.token(params={"grant_type": "authorization_code", "code": query["code"][0]})
    assert token.access_token is not None
    account = sandbox_server.client(token.access_token).v1.accounts.retrieve_current()
    assert account.business_profile is not None
    assert account.business_profile.name == "Browser Co"
