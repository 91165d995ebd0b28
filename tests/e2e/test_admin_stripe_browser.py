"""Settings → Integrations → Stripe and the webhook events pages in Chromium, against the test
run's sandbox: connect Sandbox mode, save the toggles, check the grace period, remove through the
confirmation dialog; then a webhook the sandbox delivers, in the list and on its page."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration, WebhookEvent
from app.billing.webhooks import process_pending
from app.db import Database, utcnow
from tests.e2e.test_admin_console import ENV, Console, no_problems, running_console, sign_in
from tests.support.browser import screenshot_path
from tests.support.sandbox import RunningSandbox

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, stripe_sandbox: RunningSandbox) -> Iterator[Console]:
    with running_console(
        tmp_path_factory.mktemp("console-stripe"),
        # Sandbox mode (and Test mode) reach the test run's sandbox, which delivers webhooks here.
        stripe_sandbox_url=stripe_sandbox.base_url,
        stripe_api_base=stripe_sandbox.base_url,
    ) as console:
        yield console


def signed_in(console: Console) -> Page:
    page = console.page()
    page.goto("/admin/login")
    sign_in(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def test_connect_sandbox_then_remove_through_the_dialog(console: Console) -> None:
    page = signed_in(console)
    page.get_by_role("navigation").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Not connected")).to_be_visible()
    page.get_by_role("link", name="Test mode").click()
    expect(page.get_by_label("Secret or restricted key")).to_be_visible()
    expect(page.get_by_text("TOLLGATE_STRIPE_CONNECT_CLIENT_ID")).to_be_visible()
    page.get_by_label("Secret or restricted key").fill("pk_test_" + "x" * 24)
    page.get_by_role("button", name="Connect Test mode").click()
    expect(page.locator("#f-apiKey-error")).to_contain_text("publishable keys (pk_) cannot be used")
    expect(page.get_by_label("Secret or restricted key")).to_have_value("")
    page.screenshot(path=screenshot_path("stripe-integration-key-error"), full_page=True)
    page.get_by_role("link", name="Sandbox").click()
    page.get_by_role("button", name="Connect the sandbox").click()

    status = page.locator("#integration-status")
    expect(status).to_contain_text("Active")
    expect(page.get_by_role("status").first).to_contain_text("Connected to Stripe account")
    integration = console.api("get", "/integrations/stripe").json()
    expect(status).to_contain_text(integration["accountId"])
    expect(status).to_contain_text(integration["integrationId"])
    expect(status).to_contain_text(integration["accountName"])
    page.screenshot(path=screenshot_path("stripe-integration-connected"), full_page=True)

    page.get_by_label("Sync subscriptions").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Stripe settings saved.")).to_be_visible()
    expect(page.get_by_label("Sync subscriptions")).not_to_be_checked()
    assert console.api("get", "/integrations/stripe").json()["syncSubscriptions"] is False
    page.get_by_label("Stripe Tax").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-stripeTax-error")).to_contain_text("Stripe Tax is not set up")

    page.get_by_role("button", name="Check the grace period").click()
    expect(page.get_by_text("Grace period checked.")).to_be_visible()
    expect(page.locator(".check-result")).to_contain_text("OK")

    # The dialog asks first; "Keep it" changes nothing.
    dialog = page.get_by_role("dialog", name="Remove the Stripe integration?")
    page.get_by_role("link", name="Remove integration…").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(integration["accountId"])
    page.screenshot(path=screenshot_path("stripe-integration-remove-dialog"))
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert console.api("get", "/integrations/stripe").status_code == 200
    page.get_by_role("link", name="Remove integration…").click()
    dialog.get_by_role("button", name="Remove integration").click()
    expect(page.get_by_text("Stripe integration removed.")).to_be_visible()
    expect(page.get_by_role("heading", name="Not connected")).to_be_visible()
    assert console.api("get", "/integrations/stripe").status_code == 404
    no_problems(page)


def test_webhook_events_after_a_delivery(console: Console, stripe_sandbox: RunningSandbox) -> None:
    connected = console.api("put", "/integrations/stripe", {"mode": "SANDBOX"})
    assert connected.status_code == 200, connected.text
    integration_id = connected.json()["integrationId"]

    async def api_key(database: Database) -> str:
        async with database.session() as session:
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.ref == integration_id)
            )
            assert row is not None
            return IntegrationService(session, console.server.settings).api_key(row)

    # Something changes in "Stripe": the sandbox delivers customer.updated to our endpoint.
    stripe = stripe_sandbox.client(console.server.run(api_key))
    customer = stripe.v1.customers.create(params={"email": "hook@example.com"})
    stripe.v1.customers.update(customer.id, params={"name": "Hooked <b>Customer</b>"})
    assert stripe_sandbox.control.drain(timeout=10)

    async def stored(database: Database) -> int:
        await process_pending(database, console.server.settings, utcnow())
        async with database.session() as session:
            return len((await session.scalars(select(WebhookEvent.pk))).all())

    deadline = time.monotonic() + 10
    while console.server.run(stored) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)

    page = signed_in(console)
    page.get_by_role("navigation").get_by_role("link", name="Webhook events").click()
    expect(page.get_by_role("heading", name="Webhook events")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="customer.updated").first
    expect(row).to_contain_text(customer.id)
    expect(row).to_contain_text("Ignored")  # not one of Tollgate's customers: acknowledged, nothing to do
    page.screenshot(path=screenshot_path("webhook-events-list"), full_page=True)

    page.get_by_label("Status").select_option("FAILED")
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_label("Event type").select_option("customer.updated")
    expect(page).to_have_url(f"{console.server.url}/admin/webhooks?env={ENV}&status=&type=customer.updated")
    row.get_by_role("link").click()

    expect(page.get_by_role("heading", name="customer.updated")).to_be_visible()
    expect(page.locator(".payload")).to_contain_text('"name": "Hooked <b>Customer</b>"')
    expect(page.locator(".payload b")).to_have_count(0)  # shown as text, never as markup
    expect(page.get_by_text("delivered by Stripe")).to_be_visible()
    page.screenshot(path=screenshot_path("webhook-event-detail"), full_page=True)
    no_problems(page)
