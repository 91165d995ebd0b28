"""Hosted pages over plain HTTP: Checkout, Billing Portal, OAuth consent + token, dashboard."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import stripe
from stripe.oauth_error import InvalidGrantError

from tests.support.sandbox import RunningSandbox, webhook_receiver


def _subscription_checkout(client: stripe.StripeClient, **extra: Any) -> Any:
    product = client.v1.products.create(params={"name": "Team"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2000,
            "recurring": {"interval": "month"},
        }
    )
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price.id, "quantity": 3}],
        "success_url": "https://shop.example/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]


def test_checkout_page_shows_the_order_and_pays(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(params={"amount_off": 1000, "currency": "usd", "duration": "once"})
    session = _subscription_checkout(
        client,
        customer_email="buyer@example.com",
        client_reference_id="team-42",
        discounts=[{"coupon": coupon.id}],
        subscription_data={"metadata": {"seat_plan": "team"}},
    )
    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "Team" in page.text
    assert "$60.00" in page.text  # 3 × $20
    assert "-$10.00" in page.text
    assert "$50.00" in page.text
    declined = httpx.post(
        session.url,
        data={"email": "buyer@example.com", "card_number": "4000 0000 0000 0002", "address_country": "US"},
    )
    assert declined.status_code == 402
    assert "Your card was declined." in declined.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    paid = httpx.post(
        session.url,
        data={
            "email": "buyer@example.com",
            "card_number": "4242 4242 4242 4242",
            "name": "Bea Buyer",
            "address_country": "US",
        },
    )
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://shop.example/done?session={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription", "line_items"]})
    assert done.status == "complete"
    assert done.payment_status == "paid"
    assert done.client_reference_id == "team-42"
    assert done.amount_total == 5000
    subscription = done.subscription
    assert not isinstance(subscription, str)
    assert subscription is not None
    assert subscription.status == "active"
    assert subscription.metadata.to_dict() == {"seat_plan": "team"}
    assert subscription["items"].data[0].quantity == 3
    customer = client.v1.customers.retrieve(str(done.customer))
    assert customer.email == "buyer@example.com"
    assert client.v1.invoices.retrieve(str(subscription.latest_invoice)).amount_paid == 5000
    types = [e.type for e in client.v1.events.list(params={"limit": 50}).data]
    assert "checkout.session.completed" in types
    assert "customer.created" in types


def test_checkout_with_trial_promotion_code_tax_and_setup_mode(client: stripe.StripeClient) -> None:
    client.v1.tax.settings.update(params={"head_office": {"address": {"country": "DE"}}})
    coupon = client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
    client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "HALF"}
    )
    session = _subscription_checkout(
        client,
        allow_promotion_codes=True,
        automatic_tax={"enabled": True},
        tax_id_collection={"enabled": True},
        billing_address_collection="required",
        subscription_data={"trial_period_days": 7},
    )
    page = httpx.get(session.url)
    assert "7-day free trial" in page.text
    assert 'id="promotion_code"' in page.text
    assert 'id="tax_id"' in page.text
    incomplete = httpx.post(session.url, data={"email": "t@example.com", "card_number": "4242424242424242"})
    assert incomplete.status_code == 402
    assert "billing address is incomplete" in incomplete.text
    form = {
        "email": "t@example.com",
        "card_number": "4242424242424242",
        "address_line1": "Hauptstr. 1",
        "address_city": "Berlin",
        "address_postal_code": "10115",
        "address_country": "DE",
        "promotion_code": "HALF",
        "tax_id": "DE123456789",
        "tax_id_type": "eu_vat",
    }
    assert httpx.post(session.url, data=form).status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.payment_status == "no_payment_required"
    sub = client.v1.subscriptions.retrieve(str(done.subscription))
    assert sub.status == "trialing"
    assert len(sub.discounts) == 1
    assert sub.automatic_tax.enabled is True
    tax_ids = client.v1.customers.tax_ids.list(str(done.customer)).data
    assert [t.value for t in tax_ids] == ["DE123456789"]
    setup = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "currency": "usd",
            "customer": str(done.customer),
            "success_url": "https://shop.example/saved",
        }
    )
    assert httpx.post(str(setup.url), data={"card_number": "5555555555554444"}).status_code == 303
    intent = client.v1.setup_intents.retrieve(
        str(client.v1.checkout.sessions.retrieve(setup.id).setup_intent)
    )
    assert intent.status == "succeeded"


def test_checkout_cancel_and_expire(client: stripe.StripeClient) -> None:
    session = _subscription_checkout(client)
    cancel = httpx.get(f"{session.url}/cancel")
    assert cancel.status_code == 303
    assert cancel.headers["location"] == "https://shop.example/cancel"
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    assert httpx.get(session.url).status_code == 410
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(
            params={"mode": "subscription", "success_url": "https://x.example"}
        )


def _portal(client: stripe.StripeClient, features: dict[str, Any]) -> tuple[Any, Any, Any]:
    product = client.v1.products.create(params={"name": "Basic"})
    basic = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    premium = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2500,
            "recurring": {"interval": "month"},
        }
    )
    customer = client.v1.customers.create(
        params={
            "email": "p@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": basic.id}]})
    if "subscription_update" in features:
        features["subscription_update"]["products"] = [
            {"product": product.id, "prices": [basic.id, premium.id]}
        ]
    config = client.v1.billing_portal.configurations.create(params={"features": features})  # type: ignore[arg-type]
    session = client.v1.billing_portal.sessions.create(
        params={
            "customer": customer.id,
            "configuration": config.id,
            "return_url": "https://app.example/account",
        }
    )
    return session, sub, premium


def test_portal_honours_its_configuration(client: stripe.StripeClient) -> None:
    session, sub, premium = _portal(client, {"invoice_history": {"enabled": True}})
    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "https://app.example/account" in page.text
    assert "Invoice history" in page.text
    assert "Cancel plan" not in page.text
    assert "Update payment method" not in page.text
    refused = httpx.post(f"{session.url}/subscriptions/{sub.id}/cancel")
    assert refused.status_code == 403
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False
    refused_switch = httpx.post(f"{session.url}/subscriptions/{sub.id}/switch", data={"price": premium.id})
    assert refused_switch.status_code == 403


def test_portal_updates_cancels_and_switches(client: stripe.StripeClient) -> None:
    features = {
        "customer_update": {"enabled": True, "allowed_updates": ["email", "address", "phone", "tax_id"]},
        "payment_method_update": {"enabled": True},
        "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
        "subscription_update": {
            "enabled": True,
            "default_allowed_updates": ["price"],
            "proration_behavior": "none",
        },
        "invoice_history": {"enabled": True},
    }
    session, sub, premium = _portal(client, features)
    assert "Cancel plan" in httpx.get(session.url).text
    updated = httpx.post(
        f"{session.url}/customer",
        data={
            "email": "new@example.com",
            "phone": "+4930123",
            "address_line1": "Main 1",
            "address_city": "Berlin",
            "address_postal_code": "10115",
            "address_country": "de",
            "tax_id_value": "DE999999999",
        },
    )
    assert updated.status_code == 303
    customer = client.v1.customers.retrieve(str(sub.customer))
    assert customer.email == "new@example.com"
    assert customer.phone == "+4930123"
    assert customer.address is not None
    assert customer.address.country == "DE"
    assert (
        httpx.post(f"{session.url}/payment_method", data={"card_number": "5555555555554444"}).status_code
        == 303
    )
    settings = client.v1.customers.retrieve(customer.id).invoice_settings
    assert settings is not None
    pm = client.v1.payment_methods.retrieve(str(settings.default_payment_method))
    assert pm.card is not None
    assert pm.card.brand == "mastercard"
    assert (
        httpx.post(f"{session.url}/subscriptions/{sub.id}/switch", data={"price": premium.id}).status_code
        == 303
    )
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == premium.id
    assert httpx.post(f"{session.url}/subscriptions/{sub.id}/cancel").status_code == 303
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    assert "Renew plan" in httpx.get(session.url).text


def test_oauth_consent_and_token_exchange(
    sandbox_server: RunningSandbox, client: stripe.StripeClient
) -> None:
    platform = sandbox_server.client(client._requestor.api_key, client_id="ca_sandbox_platform")  # type: ignore[attr-defined]
    url = platform.oauth.authorize_url(
        params={"scope": "read_write", "redirect_uri": "https://app.example/oauth/callback", "state": "xyz"}
    )
    assert url.startswith(f"{sandbox_server.base_url}/oauth/authorize?")
    consent = httpx.get(url)
    assert consent.status_code == 200
    assert "ca_sandbox_platform" in consent.text
    assert "View and change your customers" in consent.text
    approved = httpx.post(
        f"{sandbox_server.base_url}/oauth/authorize",
        data={
            "client_id": "ca_sandbox_platform",
            "redirect_uri": "https://app.example/oauth/callback",
            "scope": "read_write",
            "state": "xyz",
            "business_name": "Connected Co",
            "decision": "approve",
        },
    )
    assert approved.status_code == 303
    query = parse_qs(urlparse(approved.headers["location"]).query)
    assert query["state"] == ["xyz"]
    token = platform.oauth.token(params={"grant_type": "authorization_code", "code": query["code"][0]})
    assert token.access_token is not None
    assert token.access_token.startswith("sk_test_")
    assert token.stripe_user_id is not None
    assert token.stripe_user_id.startswith("acct_")
    connected = sandbox_server.client(token.access_token)
    account = connected.v1.accounts.retrieve_current()
    assert account.id == token.stripe_user_id
    assert account.business_profile is not None
    assert account.business_profile.name == "Connected Co"
    # The platform can act on the connected account, and read it.
    made = platform.v1.customers.create(
        params={"email": "via@platform.example"}, options={"stripe_account": token.stripe_user_id}
    )
    assert connected.v1.customers.retrieve(made.id).email == "via@platform.example"
    assert platform.v1.accounts.retrieve(token.stripe_user_id).id == token.stripe_user_id
    # A Connect endpoint of the platform receives the connected account's events.
    with webhook_receiver() as receiver:
        hook = platform.v1.webhook_endpoints.create(
            params={"url": receiver.url, "enabled_events": ["product.created"], "connect": True}
        )
        own = platform.v1.webhook_endpoints.create(
            params={"url": receiver.url + "/own", "enabled_events": ["product.created"]}
        )
        connected.v1.products.create(params={"name": "Connected product"})
        assert sandbox_server.control.drain(endpoint=hook.id)
        assert [json.loads(r.body)["account"] for r in receiver.received] == [token.stripe_user_id]
        assert sandbox_server.control.deliveries(endpoint=own.id) == []
    with pytest.raises(InvalidGrantError):
        platform.oauth.token(params={"grant_type": "authorization_code", "code": query["code"][0]})
    # Deauthorizing ends the platform's access to the connected account.
    assert (
        platform.oauth.deauthorize(params={"stripe_user_id": token.stripe_user_id}).stripe_user_id
        == token.stripe_user_id
    )
    with pytest.raises(stripe.PermissionError):
        platform.v1.customers.list(options={"stripe_account": token.stripe_user_id})
    denied = httpx.post(
        f"{sandbox_server.base_url}/oauth/authorize",
        data={
            "client_id": "ca_x",
            "redirect_uri": "https://app.example/cb",
            "scope": "read_write",
            "state": "s",
            "decision": "deny",
        },
    )
    assert "error=access_denied" in denied.headers["location"]


def test_dashboard_pages(sandbox_server: RunningSandbox, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "email": "dash@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    page = httpx.get(f"{sandbox_server.base_url}/dashboard/{customer.id}")
    assert page.status_code == 200
    assert "dash@example.com" in page.text
    assert "customer.created" in page.text
    pm_id = str(customer.invoice_settings.default_payment_method)  # type: ignore[union-attr]
    assert pm_id in page.text  # the attached payment method is a related object
    assert httpx.get(f"{sandbox_server.base_url}/dashboard").status_code == 200
    assert httpx.get(f"{sandbox_server.base_url}/dashboard/cus_nope").status_code == 404


def test_inline_prices_and_configuration_updates(client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 700,
                        "recurring": {"interval": "month"},
                        "product_data": {"name": "Inline plan"},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": "https://shop.example/ok",
        }
    )
    assert "Inline plan" in httpx.get(str(session.url)).text
    assert session.amount_total == 700
    session, sub, _ = _portal(client, {"invoice_history": {"enabled": False}})
    assert "Cancel plan" not in httpx.get(str(session.url)).text
    config = client.v1.billing_portal.configurations.update(
        str(session.configuration),
        params={"features": {"subscription_cancel": {"enabled": True, "mode": "immediately"}}},
    )
    assert config.features.subscription_cancel.enabled is True
    assert config.id == session.configuration
    assert "Cancel plan" in httpx.get(str(session.url)).text
    assert httpx.post(f"{session.url}/subscriptions/{sub.id}/cancel").status_code == 303
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_trial_checkout_without_a_card(client: stripe.StripeClient) -> None:
    session = _subscription_checkout(
        client,
        customer_email="trial@example.com",
        payment_method_collection="if_required",
        subscription_data={
            "trial_period_days": 14,
            "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
        },
    )
    page = httpx.get(str(session.url))
    assert "optional: nothing is due today" in page.text
    assert httpx.post(str(session.url), data={"address_country": "US"}).status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    sub = client.v1.subscriptions.retrieve(str(done.subscription))
    assert sub.status == "trialing"
    assert sub.default_payment_method is None
    assert sub.trial_settings is not None
    assert sub.trial_settings.end_behavior.missing_payment_method == "cancel"
    with_card = _subscription_checkout(
        client, customer_email="paying@example.com", payment_method_collection="if_required"
    )
    refused = httpx.post(str(with_card.url), data={"address_country": "US"})
    assert refused.status_code == 402
    assert "card number is incorrect" in refused.text
