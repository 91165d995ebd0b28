"""Exactly what Tollgate asks Stripe for when it opens a Checkout Session."""

from __future__ import annotations

import datetime as dt

from app.billing.checkout import append_query, session_params
from app.billing.schemas import CheckoutOptions

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
LINES = [{"price": "price_1", "quantity": 1}, {"price": "price_2", "quantity": 3}]


def params(**overrides: object) -> dict:
    base: dict = {
        "line_items": LINES,
        "customer_id": "cus_1",
        "subscription_ref": "sub_1",
        "customer_ref": "acme",
        "environment_slug": "prod",
        "success_url": "https://tg.example/checkout/return/t/success",
        "cancel_url": "https://tg.example/checkout/return/t/cancel",
        "options": CheckoutOptions(success_url="https://h.example/ok", cancel_url="https://h.example/no"),
        "coupon_id": None,
        "stripe_tax": False,
        "trial_end": None,
        "now": NOW,
    }
    base.update(overrides)
    return session_params(**base)


def test_plain_session() -> None:
    metadata = {
        "tollgateSubscriptionId": "sub_1",
        "tollgateCustomerId": "acme",
        "tollgateEnvironment": "prod",
    }
    assert params() == {
        "mode": "subscription",
        "line_items": LINES,
        "customer": "cus_1",
        "client_reference_id": "sub_1",
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": "https://tg.example/checkout/return/t/success",
        "cancel_url": "https://tg.example/checkout/return/t/cancel",
        "billing_address_collection": "auto",
    }


def test_stripe_tax_on() -> None:
    p = params(stripe_tax=True)
    assert p["automatic_tax"] == {"enabled": True}
    assert p["billing_address_collection"] == "required"
    assert p["tax_id_collection"] == {"enabled": True}
    assert p["customer_update"] == {"address": "auto", "name": "auto"}


def test_promotion_codes_coupon_and_address() -> None:
    promo = CheckoutOptions(
        success_url="https://h.example/ok",
        cancel_url="https://h.example/no",
        allow_promotion_codes=True,
        collect_billing_address=True,
    )
    p = params(options=promo)
    assert p["allow_promotion_codes"] is True and "discounts" not in p
    assert p["billing_address_collection"] == "required"
    with_coupon = params(options=promo, coupon_id="co_1")
    assert with_coupon["discounts"] == [{"coupon": "co_1"}] and "allow_promotion_codes" not in with_coupon


def test_trials() -> None:
    long = params(trial_end=NOW + dt.timedelta(days=14))
    assert long["subscription_data"]["trial_end"] == int((NOW + dt.timedelta(days=14)).timestamp())
    short = params(trial_end=NOW + dt.timedelta(hours=30))
    assert short["subscription_data"]["trial_period_days"] == 2
    assert "trial_end" not in short["subscription_data"]


def test_append_query_keeps_the_callers_query_and_fragment() -> None:
    assert (
        append_query("https://h.example/p?a=1#top", checkoutCompleted="true", subscriptionId="s 1")
        == "https://h.example/p?a=1&checkoutCompleted=true&subscriptionId=s+1#top"
    )
