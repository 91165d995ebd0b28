"""Subscriptions, items, invoices and invoice items, driven through time with test clocks."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.support.sandbox import running_sandbox

DAY = 86400
START = 1_767_225_600  # 2026-01-01 00:00 UTC


def _catalog(
    client: stripe.StripeClient, amounts: tuple[int, ...] = (1000,), interval: str = "month"
) -> list[Any]:
    prices = []
    for index, amount in enumerate(amounts):
        product = client.v1.products.create(params={"name": f"Plan {index}"})
        prices.append(
            client.v1.prices.create(
                params={
                    "product": product.id,
                    "currency": "usd",
                    "unit_amount": amount,
                    "recurring": {"interval": interval},
                }  # type: ignore[typeddict-item]
            )
        )
    return prices


def _clocked_customer(client: stripe.StripeClient, card: str = "pm_card_visa") -> tuple[Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    customer = client.v1.customers.create(
        params={
            "email": "clock@example.com",
            "test_clock": clock.id,
            "payment_method": card,
            "invoice_settings": {"default_payment_method": card},
        }
    )
    return clock, customer


def _advance(client: stripe.StripeClient, clock: Any, seconds: int) -> Any:
    current = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    advanced = client.v1.test_helpers.test_clocks.advance(
        current.id, params={"frozen_time": current.frozen_time + seconds}
    )
    assert advanced.status == "ready"
    return advanced


def _event_types(client: stripe.StripeClient, since: str | None = None) -> list[str]:
    events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    events = [e for e in reversed(events) if not e.type.startswith("test_helpers.")]
    if since is not None:
        ids = [e.id for e in events]
        events = events[ids.index(since) + 1 :] if since in ids else events
    return [e.type for e in events]


def test_three_items_coupon_and_trial_then_first_charge(client: stripe.StripeClient) -> None:
    prices = _catalog(client, (1000, 2000, 500))
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {"price": prices[0].id, "quantity": 1},
                {"price": prices[1].id, "quantity": 2},
                {"price": prices[2].id, "quantity": 3},
            ],
            "discounts": [{"coupon": coupon.id}],
            "trial_period_days": 14,
            "metadata": {"plan": "team"},
            "expand": ["latest_invoice"],
        }
    )
    assert sub.status == "trialing"
    assert sub.trial_end == START + 14 * DAY
    assert [i.quantity for i in sub["items"].data] == [1, 2, 3]
    assert len(sub.discounts) == 1
    first_invoice = sub.latest_invoice
    assert not isinstance(first_invoice, str)
    assert first_invoice is not None
    assert first_invoice.billing_reason == "subscription_create"
    assert first_invoice.total == 0
    assert first_invoice.status == "paid"

    mark = client.v1.events.list(params={"limit": 1}).data[0].id
    _advance(client, clock, 14 * DAY + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    draft = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert draft.status == "draft"
    assert draft.billing_reason == "subscription_cycle"
    subtotal = 1000 + 2 * 2000 + 3 * 500
    assert draft.subtotal == subtotal
    assert draft.total == subtotal - subtotal // 10
    assert _event_types(client, mark)[:3] == [
        "customer.subscription.trial_will_end",
        "invoice.created",
        "customer.subscription.updated",
    ]

    # Stripe finalises an hour after creating the renewal invoice, then charges the card.
    _advance(client, clock, 30 * 60)
    assert client.v1.invoices.retrieve(draft.id).status == "draft"
    _advance(client, clock, 31 * 60)
    paid = client.v1.invoices.retrieve(draft.id)
    assert paid.status == "paid"
    assert paid.amount_paid == subtotal - subtotal // 10
    assert paid.number is not None
    types = _event_types(client, mark)
    assert types.index("invoice.finalized") < types.index("invoice.paid")


def test_monthly_renewal_moves_the_period(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    item = sub["items"].data[0]
    assert item.current_period_start == START
    assert item.current_period_end == START + 31 * DAY  # January has 31 days
    _advance(client, clock, 31 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].current_period_start == START + 31 * DAY
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert [i.status for i in invoices] == ["paid", "paid"]


def test_failing_card_makes_renewals_past_due(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    _advance(client, clock, 31 * DAY + 2 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.status == "open"
    assert invoice.attempt_count == 1
    assert "invoice.payment_failed" in _event_types(client)
    assert invoice.next_payment_attempt == invoice.status_transitions.finalized_at + 3 * DAY  # type: ignore[operator]
    # Paying with a good card brings the subscription back.
    client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_declined_first_payment_is_incomplete_or_refused(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    _, customer = _clocked_customer(client, "pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.status == "incomplete"
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "open"
    with pytest.raises(stripe.CardError) as raised:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert raised.value.http_status == 402
    assert len(client.v1.subscriptions.list(params={"customer": customer.id}).data) == 1


def test_no_payment_method_is_refused_without_trial(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    customer = client.v1.customers.create(params={"email": "nocard@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
        }
    )
    assert sub.status == "incomplete"


def test_cancel_at_period_end_and_immediately(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock, customer = _clocked_customer(client)
    later = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    now = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    later = client.v1.subscriptions.update(later.id, params={"cancel_at_period_end": True})
    assert later.cancel_at_period_end is True
    assert later.cancel_at == later["items"].data[0].current_period_end
    canceled = client.v1.subscriptions.cancel(now.id)
    assert canceled.status == "canceled"
    assert canceled.ended_at is not None
    _advance(client, clock, 31 * DAY + 60)
    later = client.v1.subscriptions.retrieve(later.id)
    assert later.status == "canceled"
    assert _event_types(client).count("customer.subscription.deleted") == 2
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert len(client.v1.subscriptions.list(params={"customer": customer.id, "status": "canceled"}).data) == 2


def test_item_changes_prorate(client: stripe.StripeClient) -> None:
    cheap, dear = _catalog(client, (1000, 3000))
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": cheap.id}]})
    item = sub["items"].data[0]
    _advance(client, clock, 10 * DAY)
    client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "price": dear.id}], "proration_behavior": "create_prorations"},
    )
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data
    assert sorted(i.amount for i in pending) == [round(-1000 * 21 / 31), round(3000 * 21 / 31)]
    assert all(i.proration for i in pending)
    # always_invoice bills the change at once, the pending prorations included.
    updated = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "quantity": 2}], "proration_behavior": "always_invoice"}
    )
    invoice = client.v1.invoices.retrieve(str(updated.latest_invoice))
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    # Two prorations from the price change, two from the quantity change (credit 1, charge 2).
    assert sorted(line.amount for line in invoice.lines.data) == sorted(
        [round(-1000 * 21 / 31), round(3000 * 21 / 31), round(-3000 * 21 / 31), round(6000 * 21 / 31)]
    )
    assert client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "none"}
    )
    assert client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []


def test_subscription_items_api(client: stripe.StripeClient) -> None:
    base, addon = _catalog(client, (1000, 200))
    _, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": base.id}]})
    added = client.v1.subscription_items.create(
        params={"subscription": sub.id, "price": addon.id, "quantity": 4, "proration_behavior": "none"}
    )
    assert added.id.startswith("si_")
    updated = client.v1.subscription_items.update(
        added.id, params={"quantity": 5, "proration_behavior": "none"}
    )
    assert updated.quantity == 5
    listed = client.v1.subscription_items.list(params={"subscription": sub.id}).data
    assert {i.id for i in listed} == {added.id, sub["items"].data[0].id}
    deleted = client.v1.subscription_items.delete(added.id, params={"proration_behavior": "none"})
    assert deleted.deleted is True
    assert len(client.v1.subscriptions.retrieve(sub.id)["items"].data) == 1


def test_invoice_items_on_a_draft_invoice_and_invoice_lifecycle(client: stripe.StripeClient) -> None:
    _, customer = _clocked_customer(client)
    invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": False})
    assert invoice.status == "draft"
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "amount": 1250,
            "currency": "usd",
            "description": "Consulting",
        }
    )
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.total == 1250
    assert invoice.lines.data[0].description == "Consulting"
    opened = client.v1.invoices.finalize_invoice(invoice.id)
    assert opened.status == "open"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": invoice.id, "amount": 1, "currency": "usd"}
        )
    assert client.v1.invoices.pay(invoice.id).status == "paid"
    other = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": other.id, "amount": 300, "currency": "usd"}
    )
    client.v1.invoices.finalize_invoice(other.id)
    assert client.v1.invoices.void_invoice(other.id).status == "void"


def test_automatic_tax_when_stripe_tax_is_active(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock, customer = _clocked_customer(client)
    client.v1.customers.update(
        customer.id,
        params={
            "address": {
                "country": "DE",
                "postal_code": "10115",
                "city": "Berlin",
                "line1": "Unter den Linden 1",
            }
        },
    )
    customer_tax = client.v1.customers.retrieve(customer.id, params={"expand": ["tax"]}).tax
    assert customer_tax is not None
    assert customer_tax.automatic_tax == "supported"
    with pytest.raises(stripe.InvalidRequestError) as raised:  # Stripe Tax is not active yet
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id}],
                "automatic_tax": {"enabled": True},
            }
        )
    assert raised.value.param == "automatic_tax[enabled]"
    settings = client.v1.tax.settings.update(
        params={"head_office": {"address": {"country": "US", "state": "CA"}}}
    )
    assert settings.status == "active"
    taxed = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "automatic_tax": {"enabled": True},
            "expand": ["latest_invoice"],
        }
    )
    invoice = taxed.latest_invoice
    assert not isinstance(invoice, str)
    assert invoice is not None
    assert invoice.total == 1190
    assert invoice.automatic_tax.enabled is True
    assert clock.id


def test_trial_end_now_charges_at_once(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    _, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 30}
    )
    sub = client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert sub.status == "active"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.total == 1000
    assert invoice.billing_reason == "subscription_cycle"


def test_sandbox_clock_control_drives_customers_without_test_clock() -> None:
    with running_sandbox() as sb:
        client = sb.client()
        (price,) = _catalog(client)
        customer = client.v1.customers.create(
            params={
                "email": "real@example.com",
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
            }
        )
        sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
        period_end = sub["items"].data[0].current_period_end
        result = sb.control.advance_clock(period_end - sb.control.status()["now"] + 60)
        assert result["steps"] >= 1
        renewal = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub.id).latest_invoice))
        assert renewal.status == "draft"
        sb.control.advance_clock(3601)
        assert client.v1.invoices.retrieve(renewal.id).status == "paid"


def test_invoice_previews_change_nothing(client: stripe.StripeClient) -> None:
    cheap, dear = _catalog(client, (1000, 3000))
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": cheap.id}]})
    upcoming = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert upcoming.billing_reason == "upcoming"
    assert upcoming.total == 1000
    assert upcoming.period_start == START + 31 * DAY
    item = sub["items"].data[0]
    change = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "price": dear.id}],
                "proration_date": START + 10 * DAY,
            },
        }
    )
    assert sorted(line.amount for line in change.lines.data) == sorted(
        [3000, round(-1000 * 21 / 31), round(3000 * 21 / 31)]
    )
    fresh = client.v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription_details": {"items": [{"price": dear.id, "quantity": 2}]},
        }
    )
    assert fresh.total == 6000
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == cheap.id
    assert len(client.v1.subscriptions.list(params={"customer": customer.id}).data) == 1
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    assert client.v1.invoice_items.list(params={"customer": customer.id}).data == []
    assert clock.id


def test_trial_will_end_and_missing_payment_method_behaviours(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    customer = client.v1.customers.create(params={"email": "nocard@example.com", "test_clock": clock.id})
    canceling = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
        }
    )
    pausing = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        }
    )
    _advance(client, clock, 4 * DAY + 60)
    assert _event_types(client).count("customer.subscription.trial_will_end") == 2
    _advance(client, clock, 3 * DAY)
    assert client.v1.subscriptions.retrieve(canceling.id).status == "canceled"
    assert client.v1.subscriptions.retrieve(pausing.id).status == "paused"
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    pm = client.v1.payment_methods.list(params={"customer": customer.id}).data[0]
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    resumed = client.v1.subscriptions.resume(pausing.id)
    assert resumed.status == "active"
    invoice = client.v1.invoices.retrieve(str(resumed.latest_invoice))
    assert invoice.status == "paid"
    assert invoice.total == 1000


def test_subscription_is_canceled_when_every_retry_fails(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    _advance(client, clock, 31 * DAY + 2 * 3600)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    _advance(client, clock, 10 * DAY)  # three more attempts, three days apart
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.cancellation_details is not None
    assert sub.cancellation_details.reason == "payment_failed"
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.attempt_count == 4
    assert invoice.next_payment_attempt is None


def test_billing_cycle_anchor_prorates_the_first_invoice(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client, (3100,))
    clock, customer = _clocked_customer(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "billing_cycle_anchor_config": {"day_of_month": 11},
            "expand": ["latest_invoice"],
        }
    )
    anchor = START + 10 * DAY  # 11 January
    assert sub.billing_cycle_anchor == anchor
    assert sub["items"].data[0].current_period_end == anchor
    first = sub.latest_invoice
    assert not isinstance(first, str)
    assert first is not None
    assert first.total == round(3100 * 10 / 31)  # ten days of the 11 Dec - 11 Jan period
    free = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "billing_cycle_anchor": anchor,
            "proration_behavior": "none",
            "expand": ["latest_invoice"],
        }
    )
    assert free.latest_invoice.total == 0  # type: ignore[union-attr]
    _advance(client, clock, 10 * DAY + 2 * 3600)
    renewal = client.v1.invoices.retrieve(str(client.v1.subscriptions.retrieve(sub.id).latest_invoice))
    assert renewal.total == 3100
    assert renewal.period_start == anchor
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id}],
                "billing_cycle_anchor": START - 1,
            }
        )


def test_coupon_durations_once_and_repeating(client: stripe.StripeClient) -> None:
    (price,) = _catalog(client)
    once = client.v1.coupons.create(params={"amount_off": 300, "currency": "usd", "duration": "once"})
    twice = client.v1.coupons.create(
        params={"percent_off": 50, "duration": "repeating", "duration_in_months": 2}
    )
    clock, customer = _clocked_customer(client)
    first = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "discounts": [{"coupon": once.id}],
            "expand": ["latest_invoice"],
        }
    )
    second = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "discounts": [{"coupon": twice.id}],
            "expand": ["latest_invoice"],
        }
    )
    assert first.latest_invoice.total == 700  # type: ignore[union-attr]
    assert second.latest_invoice.total == 500  # type: ignore[union-attr]
    assert client.v1.subscriptions.retrieve(first.id).discounts == []
    totals = {first.id: [], second.id: []}
    for month_days in (31, 28, 31):  # January, February, March 2026
        _advance(client, clock, month_days * DAY)
        _advance(client, clock, 2 * 3600)
        for sub_id in totals:
            invoice = client.v1.invoices.retrieve(
                str(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
            )
            totals[sub_id].append(invoice.total)
    assert totals[first.id] == [1000, 1000, 1000]
    assert totals[second.id] == [500, 1000, 1000]
    types = _event_types(client)
    assert types.count("customer.discount.created") == 2
    assert types.count("customer.discount.deleted") == 2
