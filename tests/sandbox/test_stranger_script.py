"""Done means: a stripe-python script written against real Stripe runs unchanged on the sandbox.

`stranger_script` below is such a script, in the SDK's classic module-level style. The only thing
the test changes is where the SDK points (`stripe.api_base` / `connect_api_base`) and the key.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from tests.support.sandbox import RunningSandbox, running_sandbox, webhook_receiver

CHROMIUM = "/usr/bin/chromium"


def stranger_script(webhook_url: str, pay_in_browser: Callable[[str], None], site: str) -> dict[str, Any]:
    """Written as for real Stripe (test mode): nothing here knows about the sandbox."""
    endpoint = stripe.WebhookEndpoint.create(url=webhook_url, enabled_events=["*"])

    seats = stripe.Product.create(name="Seats")
    storage = stripe.Product.create(name="Storage")
    support = stripe.Product.create(name="Priority support")
    seat_price = stripe.Price.create(
        product=seats.id,
        unit_amount=800,
        currency="usd",
        recurring={"interval": "month"},
        lookup_key="seats_monthly",
    )
    storage_price = stripe.Price.create(
        product=storage.id,
        currency="usd",
        billing_scheme="tiered",
        tiers_mode="graduated",
        tiers=[{"up_to": 100, "unit_amount": 10}, {"up_to": "inf", "unit_amount": 5}],
        recurring={"interval": "month"},
    )
    support_price = stripe.Price.create(
        product=support.id, unit_amount=4900, currency="usd", recurring={"interval": "month"}
    )
    coupon = stripe.Coupon.create(percent_off=20, duration="repeating", duration_in_months=3, name="Launch")

    customer = stripe.Customer.create(
        email="jenny.rosen@example.com",
        name="Jenny Rosen",
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
        metadata={"crm_id": "4711"},
    )
    subscription = stripe.Subscription.create(
        customer=customer.id,
        items=[
            {"price": seat_price.id, "quantity": 5},
            {"price": storage_price.id, "quantity": 150},
            {"price": support_price.id},
        ],
        discounts=[{"coupon": coupon.id}],
        trial_period_days=14,
        expand=["latest_invoice"],
    )
    found = stripe.Price.list(lookup_keys=["seats_monthly"])

    session = stripe.checkout.Session.create(
        mode="subscription",
        line_items=[{"price": support_price.id, "quantity": 1}],
        customer_email="newcomer@example.com",
        success_url=site + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=site,
    )
    pay_in_browser(str(session.url))
    session = stripe.checkout.Session.retrieve(session.id, expand=["subscription"])

    portal = stripe.billing_portal.Session.create(customer=customer.id, return_url=site)
    return {
        "endpoint": endpoint,
        "customer": customer,
        "subscription": subscription,
        "found_prices": found,
        "session": session,
        "portal": portal,
    }


@pytest.fixture
def sdk_pointed_at_sandbox() -> Iterator[RunningSandbox]:
    saved = (stripe.api_key, stripe.api_base, stripe.connect_api_base, stripe.max_network_retries)
    with running_sandbox() as sb:
        stripe.api_key = "sk_test_stranger_script_key"
        stripe.api_base = sb.base_url
        stripe.connect_api_base = sb.base_url
        stripe.max_network_retries = 0
        try:
            yield sb
        finally:
            stripe.api_key, stripe.api_base, stripe.connect_api_base, stripe.max_network_retries = saved


def _browser_payer(base_url: str) -> Callable[[str], None]:
    if not os.path.exists(CHROMIUM):
        print(f"paying Checkout with a form post instead of a browser: {CHROMIUM} is not installed")
        import httpx

        def post_form(url: str) -> None:
            response = httpx.post(
                url,
                data={
                    "email": "newcomer@example.com",
                    "card_number": "4242424242424242",
                    "address_country": "US",
                },
            )
            assert response.status_code == 303

        return post_form

    def pay(url: str) -> None:
        from playwright.sync_api import sync_playwright

        # The sync Playwright API needs a thread without a running event loop.
        errors: list[BaseException] = []

        def drive() -> None:
            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
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
                    page = browser.new_page()
                    page.goto(url)
                    page.fill("#card_number", "4242 4242 4242 4242")
                    page.fill("#address_country", "US")
                    page.click("#submit")
                    page.wait_for_url(f"{base_url}/dashboard?session_id=*")
                    browser.close()
            except BaseException as error:  # handed back to the test thread
                errors.append(error)

        thread = threading.Thread(target=drive)
        thread.start()
        thread.join(60)
        if errors:
            raise errors[0]

    return pay


def test_stranger_script_runs_unchanged(sdk_pointed_at_sandbox: RunningSandbox) -> None:
    sb = sdk_pointed_at_sandbox
    with webhook_receiver() as receiver:
        result = stranger_script(receiver.url, _browser_payer(sb.base_url), f"{sb.base_url}/dashboard")
        subscription = result["subscription"]
        assert subscription.status == "trialing"
        assert len(subscription["items"].data) == 3
        assert subscription.latest_invoice.total == 0
        assert [p.lookup_key for p in result["found_prices"].data] == ["seats_monthly"]
        session = result["session"]
        assert session.status == "complete"
        assert session.subscription.status == "active"
        assert result["portal"].url.startswith(f"{sb.base_url}/portal/bps_")
        assert sb.control.drain(endpoint=result["endpoint"].id)
        secret = result["endpoint"].secret
        events = [
            stripe.Webhook.construct_event(hook.body, hook.headers["stripe-signature"], secret)
            for hook in receiver.received
        ]
        types = {event.type for event in events}
        assert {
            "product.created",
            "price.created",
            "coupon.created",
            "customer.created",
            "customer.subscription.created",
            "invoice.paid",
            "checkout.session.completed",
        } <= types
        completed = next(e for e in events if e.type == "checkout.session.completed")
        assert completed.data.object["id"] == session.id
        assert json.loads(receiver.received[0].body)["livemode"] is False
