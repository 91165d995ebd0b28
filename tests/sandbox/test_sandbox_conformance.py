"""Conformance: every resource, created through the official SDK, has the full shape of Stripe's
example object (fixtures3.json), Stripe's id prefix, and `livemode: false`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stripe

from app.sandbox.fixtures import missing_fields
from tests.support.sandbox import RunningSandbox

FIXTURES = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "stripe" / "fixtures3.json").read_text()
)["resources"]


def as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict(recursive=True)


def assert_conforms(obj: Any, kind: str, prefix: str) -> dict[str, Any]:
    data = as_dict(obj)
    assert data["object"] == FIXTURES[kind]["object"]
    assert missing_fields(FIXTURES[kind], data) == [], f"{kind} lacks fields of Stripe's example"
    if prefix:
        assert data["id"].startswith(prefix), data["id"]
    if "livemode" in FIXTURES[kind]:
        assert data["livemode"] is False
    return data


def _catalog(client: stripe.StripeClient) -> tuple[Any, Any]:
    product = client.v1.products.create(params={"name": "Pro plan", "metadata": {"tier": "pro"}})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month"},
            "lookup_key": f"pro_{product.id}",
        }
    )
    return product, price


def _paying_customer(client: stripe.StripeClient) -> Any:
    return client.v1.customers.create(
        params={
            "email": "ada@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )


def test_account_product_price_conform(client: stripe.StripeClient) -> None:
    account = assert_conforms(client.v1.accounts.retrieve_current(), "account", "acct_")
    assert account["business_profile"]["name"]
    product, price = _catalog(client)
    product_data = assert_conforms(product, "product", "prod_")
    assert product_data["name"] == "Pro plan"
    assert product_data["metadata"] == {"tier": "pro"}
    price_data = assert_conforms(price, "price", "price_")
    assert price_data["recurring"]["interval"] == "month"
    assert price_data["unit_amount"] == 1500
    assert price_data["type"] == "recurring"


def test_customer_payment_method_setup_intent_tax_id_conform(client: stripe.StripeClient) -> None:
    customer = _paying_customer(client)
    data = assert_conforms(customer, "customer", "cus_")
    pm_id = data["invoice_settings"]["default_payment_method"]
    assert pm_id.startswith("pm_")
    assert pm_id != "pm_card_visa"
    pm = assert_conforms(client.v1.payment_methods.retrieve(pm_id), "payment_method", "pm_")
    assert pm["card"]["last4"] == "4242"
    assert pm["card"]["brand"] == "visa"
    assert pm["customer"] == customer.id
    intent = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": "pm_card_mastercard", "confirm": True}
    )
    intent_data = assert_conforms(intent, "setup_intent", "seti_")
    assert intent_data["status"] == "succeeded"
    tax_id = client.v1.customers.tax_ids.create(
        customer.id, params={"type": "eu_vat", "value": "DE123456789"}
    )
    assert_conforms(tax_id, "tax_id", "txi_")


def test_coupon_promotion_code_tax_rate_tax_settings_conform(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(
        params={"percent_off": 25, "duration": "repeating", "duration_in_months": 3}
    )
    assert_conforms(coupon, "coupon", "")
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SPRING25"}
    )
    assert_conforms(promo, "promotion_code", "promo_")
    rate = client.v1.tax_rates.create(
        params={"display_name": "VAT", "percentage": 19.0, "inclusive": False, "country": "DE"}
    )
    assert_conforms(rate, "tax_rate", "txr_")
    settings = client.v1.tax.settings.retrieve()
    assert_conforms(settings, "tax.settings", "")


def test_subscription_invoice_items_conform(client: stripe.StripeClient) -> None:
    _, price = _catalog(client)
    customer = _paying_customer(client)
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id, "quantity": 2}]}
    )
    sub = assert_conforms(subscription, "subscription", "sub_")
    assert sub["status"] == "active"
    types = [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)]
    assert types[types.index("customer.subscription.created") :] == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    created = client.v1.events.list(params={"type": "customer.subscription.created"}).data[0]
    assert created.data.object["status"] == "active"
    assert created.data.object["latest_invoice"] == sub["latest_invoice"]
    item = assert_conforms(subscription["items"].data[0], "subscription_item", "si_")
    assert item["quantity"] == 2
    invoice = assert_conforms(client.v1.invoices.retrieve(sub["latest_invoice"]), "invoice", "in_")
    assert invoice["status"] == "paid"
    assert invoice["total"] == 3000
    line = assert_conforms(client.v1.invoices.line_items.list(invoice["id"]).data[0], "line_item", "il_")
    assert line["amount"] == 3000
    invoice_item = client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 500, "currency": "usd", "description": "Setup fee"}
    )
    assert_conforms(invoice_item, "invoiceitem", "ii_")
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_700_000_000})
    assert_conforms(clock, "test_helpers.test_clock", "clock_")


def test_checkout_portal_webhook_event_conform(
    client: stripe.StripeClient, sandbox_server: RunningSandbox
) -> None:
    _, price = _catalog(client)
    customer = _paying_customer(client)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok?cs={CHECKOUT_SESSION_ID}",
            "customer": customer.id,
        }
    )
    data = assert_conforms(session, "checkout.session", "cs_test_")
    assert data["url"] == f"{sandbox_server.base_url}/checkout/{session.id}"
    config = client.v1.billing_portal.configurations.create(
        params={"features": {"invoice_history": {"enabled": True}}}
    )
    assert_conforms(config, "billing_portal.configuration", "bpc_")
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://example.com/account"}
    )
    portal_data = assert_conforms(portal, "billing_portal.session", "bps_")
    assert portal_data["url"] == f"{sandbox_server.base_url}/portal/{portal.id}"
    endpoint = client.v1.webhook_endpoints.create(
        params={
            "url": "http://127.0.0.1:9/hook",
            "enabled_events": ["customer.created"],
            "api_version": "2026-10-28.endive",
        }
    )
    endpoint_data = assert_conforms(endpoint, "webhook_endpoint", "we_")
    assert endpoint_data["secret"].startswith("whsec_")
    event = client.v1.events.list(params={"limit": 1}).data[0]
    assert_conforms(event, "event", "evt_")


@pytest.mark.parametrize(
    ("tiers_mode", "quantity", "expected"),
    [
        ("volume", 5, 5 * 900),  # all units at the tier the quantity falls in
        ("volume", 15, 15 * 700),
        ("graduated", 15, 10 * 900 + 5 * 700),  # each unit at its own tier
    ],
)
def test_tiered_prices_bill_like_stripe(
    client: stripe.StripeClient, tiers_mode: str, quantity: int, expected: int
) -> None:
    product = client.v1.products.create(params={"name": "Seats"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "billing_scheme": "tiered",
            "tiers_mode": tiers_mode,  # type: ignore[typeddict-item]
            "tiers": [{"up_to": 10, "unit_amount": 900}, {"up_to": "inf", "unit_amount": 700}],
            "recurring": {"interval": "month"},
        }
    )
    assert price.tiers_mode == tiers_mode
    assert price.billing_scheme == "tiered"
    customer = _paying_customer(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": quantity}],
            "expand": ["latest_invoice"],
        }
    )
    assert sub.latest_invoice.total == expected  # type: ignore[union-attr]


async def test_async_sdk_calls(client: stripe.StripeClient) -> None:
    customer = await client.v1.customers.create_async(params={"email": "async@example.com"})
    assert_conforms(customer, "customer", "cus_")
    fetched = await client.v1.customers.retrieve_async(customer.id)
    assert fetched.email == "async@example.com"
    page = await client.v1.customers.list_async(params={"limit": 1})
    assert [c.id for c in page.data] == [customer.id]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.customers.retrieve_async("cus_missing")
