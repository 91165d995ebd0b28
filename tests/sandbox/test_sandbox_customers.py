"""Customers, payment methods, setup intents, tax ids and webhook endpoints."""

from __future__ import annotations

import pytest
import stripe


def test_customer_fields_metadata_and_address(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "email": "c@example.com",
            "name": "C",
            "phone": "+1555",
            "address": {"line1": "1 Main St", "city": "Springfield", "country": "US", "postal_code": "12345"},
            "metadata": {"x": "1", "y": "2"},
        }
    )
    assert customer.address is not None
    assert customer.address.city == "Springfield"
    assert customer.balance == 0
    assert customer.invoice_prefix
    updated = client.v1.customers.update(
        customer.id, params={"metadata": {"x": ""}, "address": {"country": "DE", "postal_code": "10115"}}
    )
    assert updated.to_dict()["metadata"] == {"y": "2"}
    assert updated.address is not None
    assert updated.address.country == "DE"
    assert client.v1.customers.update(customer.id, params={"metadata": ""}).to_dict()["metadata"] == {}
    event = client.v1.events.list(params={"type": "customer.updated", "limit": 3}).data[-1]
    assert event.data.to_dict()["previous_attributes"]["metadata"] == {"x": "1", "y": "2"}


def test_customer_search_list_and_delete(client: stripe.StripeClient) -> None:
    tagged = client.v1.customers.create(
        params={"email": "find@example.com", "metadata": {"tollgate_id": "42"}}
    )
    client.v1.customers.create(params={"email": "other@example.com"})
    assert [
        c.id for c in client.v1.customers.search(params={"query": "metadata['tollgate_id']:'42'"}).data
    ] == [tagged.id]
    assert [c.id for c in client.v1.customers.list(params={"email": "find@example.com"}).data] == [tagged.id]
    deleted = client.v1.customers.delete(tagged.id)
    assert deleted.deleted is True
    again = client.v1.customers.retrieve(tagged.id)
    assert again.to_dict().get("deleted") is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(tagged.id, params={"name": "ghost"})
    assert "customer.deleted" in [e.type for e in client.v1.events.list().data]


def test_tax_ids_and_automatic_tax_status(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "t@example.com", "tax_id_data": [{"type": "eu_vat", "value": "FR12345678901"}]}
    )
    ids = client.v1.customers.tax_ids.list(customer.id).data
    assert [t.value for t in ids] == ["FR12345678901"]
    assert ids[0].country == "FR"
    assert customer.tax is not None
    assert customer.tax.automatic_tax == "unrecognized_location"
    client.v1.customers.tax_ids.delete(customer.id, ids[0].id)
    assert client.v1.customers.tax_ids.list(customer.id).data == []


def test_payment_methods_attach_default_detach(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "pm@example.com"})
    visa = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    amex = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "378282246310005", "exp_month": 1, "exp_year": 2031}}
    )
    client.v1.payment_methods.attach(amex.id, params={"customer": customer.id})
    listed = client.v1.customers.payment_methods.list(customer.id).data
    assert {p.id for p in listed} == {visa.id, amex.id}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": "pm_not_attached"}}
        )
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": amex.id}})
    detached = client.v1.payment_methods.detach(amex.id)
    assert detached.customer is None
    settings = client.v1.customers.retrieve(customer.id).invoice_settings
    assert settings is not None
    assert settings.default_payment_method is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.detach(amex.id)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert declined.value.code == "card_declined"
    types = [e.type for e in client.v1.events.list().data]
    assert "payment_method.attached" in types
    assert "payment_method.detached" in types


def test_setup_intents(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "si@example.com"})
    intent = client.v1.setup_intents.create(params={"customer": customer.id, "usage": "off_session"})
    assert intent.status == "requires_payment_method"
    assert intent.client_secret is not None
    assert intent.client_secret.startswith(intent.id + "_secret_")
    confirmed = client.v1.setup_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert confirmed.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(str(confirmed.payment_method))
    assert pm.customer == customer.id
    other = client.v1.setup_intents.create(params={"customer": customer.id})
    with pytest.raises(stripe.CardError):
        client.v1.setup_intents.confirm(other.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert client.v1.setup_intents.retrieve(other.id).status == "requires_payment_method"
    assert client.v1.setup_intents.cancel(other.id).status == "canceled"


def test_webhook_endpoints_crud(client: stripe.StripeClient) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        params={
            "url": "https://hooks.example/a",
            "enabled_events": ["customer.created"],
            "api_version": "2026-10-28.endive",
            "description": "main",
        }
    )
    assert endpoint.api_version == "2026-10-28.endive"
    assert endpoint.secret is not None
    fetched = client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert "secret" not in fetched.to_dict()  # shown once, at creation
    disabled = client.v1.webhook_endpoints.update(
        endpoint.id, params={"disabled": True, "enabled_events": ["*"]}
    )
    assert disabled.status == "disabled"
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]
    assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
    assert client.v1.webhook_endpoints.list().data == []


def test_includable_customer_fields(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "inc@example.com", "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}]}
    )
    product = client.v1.products.create(params={"name": "Inc"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 100,
            "recurring": {"interval": "month"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 3}
    )
    expanded = client.v1.customers.retrieve(
        customer.id, params={"expand": ["subscriptions", "tax_ids"]}
    ).to_dict()
    assert [s["id"] for s in expanded["subscriptions"]["data"]] == [sub.id]
    assert [t["value"] for t in expanded["tax_ids"]["data"]] == ["DE123456789"]
    assert "subscriptions" not in client.v1.customers.retrieve(customer.id).to_dict()
