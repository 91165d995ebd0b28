"""Products, prices, coupons, promotion codes, tax rates and tax settings, with their events."""

from __future__ import annotations

import pytest
import stripe


def _types(client: stripe.StripeClient) -> list[str]:
    return [e.type for e in reversed(client.v1.events.list(params={"limit": 100}).data)]


def test_products_update_archive_delete(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"name": "Widget", "description": "A widget", "metadata": {"a": "1", "b": "2"}}
    )
    updated = client.v1.products.update(
        product.id, params={"name": "Widget Pro", "metadata": {"a": "", "c": "3"}}
    )
    assert updated.name == "Widget Pro"
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}
    assert client.v1.products.update(product.id, params={"active": False}).active is False
    assert client.v1.products.delete(product.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.retrieve(product.id)
    assert raised.value.http_status == 404
    assert _types(client) == ["product.created", "product.updated", "product.updated", "product.deleted"]


def test_products_with_prices_cannot_be_deleted(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"name": "Priced", "default_price_data": {"currency": "eur", "unit_amount": 500}}
    )
    assert product.default_price is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.delete(product.id)


def test_prices_recurring_lookup_keys_and_archive(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    monthly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
            "lookup_key": "plan",
        }
    )
    yearly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 10000,
            "recurring": {"interval": "year"},
        }
    )
    assert monthly.recurring is not None
    assert monthly.recurring.interval == "month"
    assert yearly.recurring is not None
    assert yearly.recurring.interval == "year"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1200,
                "recurring": {"interval": "month"},
                "lookup_key": "plan",
            }
        )
    assert raised.value.param == "lookup_key"
    moved = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1200,
            "recurring": {"interval": "month"},
            "lookup_key": "plan",
            "transfer_lookup_key": True,
        }
    )
    assert [p.id for p in client.v1.prices.list(params={"lookup_keys": ["plan"]}).data] == [moved.id]
    assert client.v1.prices.retrieve(monthly.id).lookup_key is None
    archived = client.v1.prices.update(monthly.id, params={"active": False})
    assert archived.active is False
    assert {p.id for p in client.v1.prices.list(params={"active": True, "product": product.id}).data} == {
        yearly.id,
        moved.id,
    }
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(
            params={
                "customer": client.v1.customers.create().id,
                "items": [{"price": monthly.id}],
                "payment_behavior": "default_incomplete",
            }
        )
    assert "price.updated" in _types(client)
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "fortnight"},
            }
        )  # type: ignore[typeddict-item]
    assert bad.value.param == "recurring[interval]"


def test_coupons_and_promotion_codes(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(
        params={
            "id": "SUMMER",
            "amount_off": 500,
            "currency": "usd",
            "duration": "once",
            "max_redemptions": 10,
        }
    )
    assert coupon.id == "SUMMER"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create(params={"percent_off": 10, "amount_off": 100, "currency": "usd"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SUN"}
    )
    assert promo.active is True
    assert [p.id for p in client.v1.promotion_codes.list(params={"code": "SUN"}).data] == [promo.id]
    assert client.v1.promotion_codes.update(promo.id, params={"active": False}).active is False
    assert client.v1.coupons.update(coupon.id, params={"name": "Summer sale"}).name == "Summer sale"
    deleted = client.v1.coupons.delete(coupon.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.retrieve(coupon.id)
    types = _types(client)
    assert types.count("coupon.created") == 1
    assert "coupon.updated" in types
    assert "coupon.deleted" in types


def test_tax_rates_and_settings(client: stripe.StripeClient) -> None:
    rate = client.v1.tax_rates.create(
        params={
            "display_name": "VAT",
            "percentage": 20.0,
            "inclusive": False,
            "country": "FR",
            "jurisdiction": "FR",
        }
    )
    assert rate.percentage == 20.0
    assert client.v1.tax_rates.update(rate.id, params={"active": False}).active is False
    assert client.v1.tax_rates.list(params={"active": True}).data == []
    settings = client.v1.tax.settings.retrieve()
    assert settings.status == "pending"
    active = client.v1.tax.settings.update(
        params={
            "head_office": {"address": {"country": "FR", "postal_code": "75001"}},
            "defaults": {"tax_behavior": "exclusive"},
        }
    )
    assert active.status == "active"
    assert active.defaults.tax_behavior == "exclusive"
    assert client.v1.tax.settings.retrieve().status == "active"
