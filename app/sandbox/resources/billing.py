"""Subscriptions, subscription items, invoices, invoice items, discounts and test clocks.

The billing engine lives here too: building invoices (subscription lines, prorations, coupons,
tax), finalising them after Stripe's one-hour grace period, charging the default payment method,
and `process_due`, which drives renewals, trial ends, cancellations and finalisation whenever
time moves (a test clock advance, the sandbox clock control endpoint, or the background tick).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

from app.sandbox.core import Ctx, apply_metadata, changed_fields, route, unset
from app.sandbox.fixtures import shaped
from app.sandbox.resources.catalog import (
    automatic_tax_percent,
    coupon_discount,
    price_amount,
    require_stripe_tax,
)
from app.sandbox.resources.customers import card_declined, resolve_payment_method
from app.sandbox.wire import StripeError, new_id

FINALIZATION_GRACE_SECONDS = 3600  # Stripe finalises renewal invoices an hour after creating them.
PAYMENT_RETRY_SECONDS = 3 * 86400
PAYMENT_ATTEMPTS = 4
INCOMPLETE_EXPIRY_SECONDS = 23 * 3600
TRIAL_WILL_END_SECONDS = 3 * 86400
LIVE_STATUSES = {"trialing", "active", "past_due", "incomplete", "unpaid"}


def add_interval(timestamp: int, interval: str, count: int = 1) -> int:
    moment = datetime.fromtimestamp(timestamp, UTC)
    if interval == "day":
        return timestamp + 86400 * count
    if interval == "week":
        return timestamp + 7 * 86400 * count
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency.upper()}"


# -- discounts --------------------------------------------------------------------------------
def _new_discount(
    ctx: Ctx, spec: dict[str, Any], customer_id: str, subscription_id: str | None, start: int, param: str
) -> dict[str, Any]:
    if spec.get("discount"):
        return ctx.get("discount", spec["discount"], param)
    promotion_code = None
    if spec.get("promotion_code"):
        promo = ctx.get("promotion_code", spec["promotion_code"], f"{param}[promotion_code]")
        if not promo["active"]:
            raise StripeError(400, "This promotion code is not active.", code="coupon_expired", param=param)
        promotion_code = promo["id"]
        coupon_id = promo["promotion"]["coupon"]
        promo["times_redeemed"] += 1
        ctx.put(promo)
    else:
        coupon_id = spec.get("coupon", "")
    coupon = ctx.get("coupon", coupon_id, f"{param}[coupon]")
    if not coupon["valid"]:
        raise StripeError(400, f"Coupon expired: {coupon_id}", code="coupon_expired", param=param)
    coupon["times_redeemed"] += 1
    if coupon.get("max_redemptions") and coupon["times_redeemed"] >= coupon["max_redemptions"]:
        coupon["valid"] = False
    ctx.put(coupon)
    end = None
    if coupon["duration"] == "repeating":
        end = add_interval(start, "month", int(coupon.get("duration_in_months") or 1))
    discount = shaped(
        "discount",
        id=new_id("di_"),
        customer=customer_id,
        end=end,
        promotion_code=promotion_code,
        source={"coupon": coupon_id, "type": "coupon"},
        start=start,
        subscription=subscription_id,
    )
    discount["coupon"] = coupon
    ctx.put(discount)
    ctx.emit("customer.discount.created", discount, at=start)
    return discount


def _discounts_from(
    ctx: Ctx, specs: Any, customer_id: str, subscription_id: str | None, start: int
) -> list[str]:
    if not specs:
        return []
    return [
        _new_discount(ctx, spec, customer_id, subscription_id, start, f"discounts[{i}]")["id"]
        for i, spec in enumerate(specs)
    ]


# -- payment ----------------------------------------------------------------------------------
def _payment_method_for(ctx: Ctx, invoice: dict[str, Any]) -> dict[str, Any] | None:
    candidates = [invoice.get("default_payment_method")]
    subscription = ctx.find("subscription", _invoice_subscription(invoice))
    if subscription:
        candidates.append(subscription.get("default_payment_method"))
    customer = ctx.find("customer", invoice["customer"])
    if customer:
        candidates.append(customer["invoice_settings"].get("default_payment_method"))
    for pm_id in candidates:
        pm = ctx.find("payment_method", pm_id)
        if pm is not None:
            return pm
    return None


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return details.get("subscription")


def charge(ctx: Ctx, pm: dict[str, Any] | None) -> str | None:
    """None when the charge succeeds, else the decline code."""
    if pm is None:
        return "no_payment_method"
    return pm.get("_charge_fails")


# -- invoices ---------------------------------------------------------------------------------
def _line(
    ctx: Ctx,
    *,
    amount: int,
    currency: str,
    description: str,
    period: tuple[int, int],
    quantity: int | None,
    price: dict[str, Any] | None,
    subscription_id: str | None,
    item_id: str | None = None,
    invoice_item: dict[str, Any] | None = None,
) -> dict[str, Any]:
    line = shaped(
        "line_item",
        id=new_id("il_"),
        amount=amount,
        currency=currency,
        description=description,
        discountable=invoice_item.get("discountable", True) if invoice_item else True,
        metadata=dict(invoice_item.get("metadata") or {}) if invoice_item else {},
        period={"start": period[0], "end": period[1]},
        quantity=quantity,
        subtotal=amount,
        subscription=subscription_id,
    )
    if invoice_item is not None:
        line["parent"] = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": invoice_item["id"],
                "proration": invoice_item["proration"],
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
        }
    else:
        line["parent"] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": item_id,
            },
        }
    line["pricing"] = {
        "type": "price_details",
        "price_details": {"price": price["id"], "product": price["product"]} if price else None,
        "unit_amount_decimal": str(price.get("unit_amount"))
        if price and price.get("unit_amount") is not None
        else None,
    }
    return line


def _recompute(ctx: Ctx, invoice: dict[str, Any]) -> None:
    """Totals from lines, discounts and tax."""
    lines = invoice["lines"]["data"]
    subtotal = sum(line["amount"] for line in lines)
    discount_total = 0
    totals: list[dict[str, Any]] = []
    discountable = sum(line["amount"] for line in lines if line["discountable"] and line["amount"] > 0)
    for line in lines:
        line["discount_amounts"] = []
    for discount_id in invoice.get("discounts") or []:
        discount = ctx.find("discount", discount_id)
        if discount is None:
            continue
        coupon = ctx.find("coupon", discount["source"]["coupon"]) or discount.get("coupon") or {}
        amount = coupon_discount(coupon, max(0, discountable - discount_total))
        if amount <= 0:
            continue
        discount_total += amount
        totals.append({"amount": amount, "discount": discount_id})
        remaining = amount
        positive = [line for line in lines if line["discountable"] and line["amount"] > 0]
        for index, line in enumerate(positive):
            share = (
                remaining
                if index == len(positive) - 1
                else round(amount * line["amount"] / max(discountable, 1))
            )
            share = min(share, remaining)
            remaining -= share
            line["discount_amounts"].append({"amount": share, "discount": discount_id})
    taxable = subtotal - discount_total
    tax_total = 0
    taxes: list[dict[str, Any]] = []
    percent = invoice.get("_tax_percent")
    if percent:
        tax_total = round(max(taxable, 0) * percent / 100)
        taxes.append(
            {
                "amount": tax_total,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": invoice.get("_tax_rate") or "automatic"},
                "taxability_reason": "standard_rated",
                "taxable_amount": max(taxable, 0),
                "type": "tax_rate_details",
            }
        )
    total = subtotal - discount_total + tax_total
    invoice.update(
        subtotal=subtotal,
        subtotal_excluding_tax=subtotal,
        total_discount_amounts=totals,
        total_excluding_tax=subtotal - discount_total,
        total_taxes=taxes,
        total=total,
        amount_due=max(total, 0),
        amount_remaining=max(total, 0) - invoice.get("amount_paid", 0),
    )
    invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"


def _tax_percent(
    ctx: Ctx, customer: dict[str, Any], automatic: bool, tax_rate_ids: list[str]
) -> tuple[float | None, str | None]:
    if tax_rate_ids:
        rate = ctx.find("tax_rate", tax_rate_ids[0])
        if rate:
            return float(rate["percentage"]), rate["id"]
    if automatic:
        country = (customer.get("address") or {}).get("country")
        return automatic_tax_percent(ctx, country), None
    return None, None


def new_invoice(
    ctx: Ctx,
    customer: dict[str, Any],
    *,
    billing_reason: str,
    subscription: dict[str, Any] | None = None,
    lines: list[dict[str, Any]] | None = None,
    include_pending: bool = True,
    auto_advance: bool = True,
    period: tuple[int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = ctx.now_for_customer(customer["id"])
    invoice_id = new_id("in_")
    currency = (subscription or {}).get("currency") or customer.get("currency") or "usd"
    automatic = bool(subscription and subscription["automatic_tax"]["enabled"]) or bool(
        (extra or {}).get("automatic_tax")
    )
    invoice = shaped(
        "invoice",
        id=invoice_id,
        account_country="US",
        account_name=ctx.sandbox.account_name(ctx.account),
        auto_advance=auto_advance,
        billing_reason=billing_reason,
        collection_method=(subscription or {}).get("collection_method") or "charge_automatically",
        created=now,
        currency=currency,
        customer=customer["id"],
        customer_address=customer.get("address"),
        customer_email=customer.get("email"),
        customer_name=customer.get("name"),
        customer_phone=customer.get("phone"),
        customer_tax_exempt=customer.get("tax_exempt") or "none",
        discounts=list((subscription or {}).get("discounts") or []),
        hosted_invoice_url=f"{ctx.sandbox.public_url}/dashboard/{invoice_id}",
        metadata={},
        period_end=period[1] if period else now,
        period_start=period[0] if period else now,
        starting_balance=0,
        status="draft",
        test_clock=customer.get("test_clock"),
        automatically_finalizes_at=now + FINALIZATION_GRACE_SECONDS if auto_advance else None,
        webhooks_delivered_at=now,
        effective_at=None,
    )
    invoice["automatic_tax"] = {
        "enabled": automatic,
        "liability": {"type": "self"} if automatic else None,
        "status": "complete" if automatic else None,
        "disabled_reason": None,
        "provider": "stripe" if automatic else None,
    }
    invoice["default_tax_rates"] = list((subscription or {}).get("default_tax_rates") or [])
    percent, rate_id = _tax_percent(ctx, customer, automatic, invoice["default_tax_rates"])
    invoice["_tax_percent"] = percent
    invoice["_tax_rate"] = rate_id
    if subscription:
        invoice["subscription"] = subscription["id"]
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription.get("metadata") or {}),
                "subscription": subscription["id"],
            },
        }
        invoice["default_payment_method"] = None
    collected = list(lines or [])
    if include_pending:
        for item in reversed(ctx.of_customer("invoiceitem", customer["id"])):
            if item.get("invoice"):
                continue
            if subscription is not None and _item_subscription(item) not in (None, subscription["id"]):
                continue
            collected.append(_invoice_item_line(ctx, item))
            item["invoice"] = invoice_id
            ctx.put(item)
    for line in collected:
        line["invoice"] = invoice_id
    invoice["lines"] = {
        "object": "list",
        "data": collected,
        "has_more": False,
        "url": f"/v1/invoices/{invoice_id}/lines",
    }
    if extra:
        invoice.update({k: v for k, v in extra.items() if k != "automatic_tax"})
    _recompute(ctx, invoice)
    ctx.put(invoice)
    ctx.emit("invoice.created", invoice, at=now)
    return invoice


def _item_subscription(item: dict[str, Any]) -> str | None:
    parent = item.get("parent") or {}
    return (parent.get("subscription_details") or {}).get("subscription")


def _invoice_item_line(ctx: Ctx, item: dict[str, Any]) -> dict[str, Any]:
    price = ctx.find("price", ((item.get("pricing") or {}).get("price_details") or {}).get("price"))
    return _line(
        ctx,
        amount=item["amount"],
        currency=item["currency"],
        description=item.get("description") or "Invoice item",
        period=(item["period"]["start"], item["period"]["end"]),
        quantity=item.get("quantity"),
        price=price,
        subscription_id=_item_subscription(item),
        invoice_item=item,
    )


def finalize(ctx: Ctx, invoice: dict[str, Any], *, pay: bool = True) -> dict[str, Any]:
    if invoice["status"] != "draft":
        raise StripeError(
            400, "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    now = ctx.now_for_customer(invoice["customer"])
    customer = ctx.get("customer", invoice["customer"])
    sequence = customer.get("next_invoice_sequence") or 1
    customer["next_invoice_sequence"] = sequence + 1
    ctx.put(customer)
    invoice.update(
        status="open",
        number=f"{customer['invoice_prefix']}-{sequence:04d}",
        effective_at=now,
        automatically_finalizes_at=None,
        due_date=now + 30 * 86400 if invoice["collection_method"] == "send_invoice" else None,
    )
    invoice["status_transitions"]["finalized_at"] = now
    ctx.put(invoice)
    ctx.emit("invoice.finalized", invoice, at=now)
    if pay and invoice["collection_method"] == "charge_automatically":
        attempt_payment(ctx, invoice)
    return invoice


def attempt_payment(
    ctx: Ctx, invoice: dict[str, Any], pm: dict[str, Any] | None = None, *, announce_status: bool = True
) -> str | None:
    """Charge an open invoice; updates the invoice and its subscription. Returns the decline code.

    `announce_status=False` changes the subscription's status without its own `updated` event
    (a subscription paid while being created is announced once, already active)."""
    now = ctx.now_for_customer(invoice["customer"])
    if invoice["amount_due"] == 0:
        decline = None
    else:
        pm = pm or _payment_method_for(ctx, invoice)
        decline = charge(ctx, pm)
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
    subscription = ctx.find("subscription", _invoice_subscription(invoice))
    if decline is None:
        invoice.update(
            status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, next_payment_attempt=None
        )
        invoice["status_transitions"]["paid_at"] = now
        ctx.put(invoice)
        ctx.emit("invoice.paid", invoice, at=now)
        ctx.emit("invoice.payment_succeeded", invoice, at=now)
        if subscription and subscription["status"] in {"incomplete", "past_due", "unpaid"}:
            if announce_status:
                _set_status(ctx, subscription, "active", now)
            else:
                subscription["status"] = "active"
                save_subscription(ctx, subscription)
    else:
        retry = (
            invoice["attempt_count"] < PAYMENT_ATTEMPTS and invoice["billing_reason"] != "subscription_create"
        )
        invoice["next_payment_attempt"] = now + PAYMENT_RETRY_SECONDS if retry else None
        ctx.put(invoice)
        ctx.emit("invoice.payment_failed", invoice, at=now)
        if subscription and subscription["status"] in {"active", "trialing"}:
            _set_status(ctx, subscription, "past_due", now)
        if subscription and not retry and invoice["billing_reason"] != "subscription_create":
            # Stripe's default once every retry has failed: cancel the subscription.
            subscription = ctx.get("subscription", subscription["id"])
            if subscription["status"] == "past_due":
                cancel_subscription_now(ctx, subscription, reason="payment_failed", at=now)
    return decline


def _set_status(ctx: Ctx, subscription: dict[str, Any], status: str, now: int) -> None:
    previous = {"status": subscription["status"]}
    subscription["status"] = status
    save_subscription(ctx, subscription)
    ctx.emit("customer.subscription.updated", subscription, previous, at=now)


# -- subscriptions ----------------------------------------------------------------------------
def save_subscription(ctx: Ctx, subscription: dict[str, Any]) -> dict[str, Any]:
    """Store the subscription with its items list rebuilt from the stored items."""
    items = [ctx.get("subscription_item", item_id) for item_id in subscription["_item_ids"]]
    subscription["items"] = {
        "object": "list",
        "data": items,
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={subscription['id']}",
    }
    if items:
        subscription["currency"] = items[0]["price"]["currency"]
    ctx.put(subscription)
    return subscription


def _period(subscription: dict[str, Any]) -> tuple[int, int]:
    return subscription["_period_start"], subscription["_period_end"]


def _set_period(ctx: Ctx, subscription: dict[str, Any], start: int, end: int) -> None:
    subscription["_period_start"], subscription["_period_end"] = start, end
    for item_id in subscription["_item_ids"]:
        item = ctx.get("subscription_item", item_id)
        item["current_period_start"], item["current_period_end"] = start, end
        ctx.put(item)


def _price_for_item(ctx: Ctx, spec: dict[str, Any], param: str) -> dict[str, Any]:
    if spec.get("price_data"):
        from app.sandbox.resources.catalog import _new_price

        data = spec["price_data"]
        return _new_price(ctx, {**data, "recurring": data["recurring"]})
    price_id = spec.get("price") or spec.get("plan")
    if not price_id:
        raise StripeError(
            400, f"Missing required param: {param}[price].", code="parameter_missing", param=f"{param}[price]"
        )
    price = ctx.get("price", price_id, f"{param}[price]")
    if not price["recurring"]:
        raise StripeError(
            400,
            "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
            param=f"{param}[price]",
        )
    if not price["active"]:
        raise StripeError(
            400,
            "The price specified is inactive. This field only accepts active prices.",
            param=f"{param}[price]",
        )
    return price


def _new_item(
    ctx: Ctx, subscription_id: str, price: dict[str, Any], spec: dict[str, Any], now: int
) -> dict[str, Any]:
    item = shaped(
        "subscription_item",
        id=new_id("si_", 14),
        created=now,
        metadata=apply_metadata({}, spec.get("metadata")),
        price=price,
        quantity=spec.get("quantity", 1),
        subscription=subscription_id,
        tax_rates=[ctx.get("tax_rate", r) for r in (unset(spec.get("tax_rates")) or [])],
        discounts=[],
    )
    item["plan"] = _plan_view(price)
    ctx.put(item)
    return item


def _plan_view(price: dict[str, Any]) -> dict[str, Any]:
    recurring = price.get("recurring") or {}
    plan = shaped(
        "plan",
        id=price["id"],
        active=price["active"],
        amount=price.get("unit_amount"),
        amount_decimal=price.get("unit_amount_decimal"),
        billing_scheme=price["billing_scheme"],
        created=price["created"],
        currency=price["currency"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count", 1),
        metadata=price.get("metadata") or {},
        nickname=price.get("nickname"),
        product=price["product"],
        tiers_mode=price.get("tiers_mode"),
        usage_type=recurring.get("usage_type", "licensed"),
    )
    return plan


def _item_line(
    ctx: Ctx, subscription: dict[str, Any], item: dict[str, Any], period: tuple[int, int], trial: bool
) -> dict[str, Any]:
    price = item["price"]
    product = ctx.find("product", price["product"]) or {"name": price["product"]}
    quantity = item["quantity"]
    if trial:
        amount, description = 0, f"Trial period for {product['name']}"
    else:
        amount = price_amount(price, quantity)
        description = f"{quantity} × {product['name']} (at {_money(int(price.get('unit_amount') or 0), price['currency'])} / {price['recurring']['interval']})"
    return _line(
        ctx,
        amount=amount,
        currency=price["currency"],
        description=description,
        period=period,
        quantity=quantity,
        price=price,
        subscription_id=subscription["id"],
        item_id=item["id"],
    )


def _cycle_lines(ctx: Ctx, subscription: dict[str, Any], trial: bool) -> list[dict[str, Any]]:
    period = _period(subscription)
    return [
        _item_line(ctx, subscription, ctx.get("subscription_item", i), period, trial)
        for i in subscription["_item_ids"]
    ]


def _subscription_invoice(
    ctx: Ctx,
    subscription: dict[str, Any],
    billing_reason: str,
    *,
    trial: bool,
    lines: list[dict[str, Any]] | None = None,
    auto_advance: bool = True,
) -> dict[str, Any]:
    customer = ctx.get("customer", subscription["customer"])
    invoice = new_invoice(
        ctx,
        customer,
        billing_reason=billing_reason,
        subscription=subscription,
        lines=lines if lines is not None else _cycle_lines(ctx, subscription, trial),
        auto_advance=auto_advance,
        period=_period(subscription),
    )
    _consume_once_discounts(ctx, subscription, invoice)
    subscription["latest_invoice"] = invoice["id"]
    return invoice


def _consume_once_discounts(ctx: Ctx, subscription: dict[str, Any], invoice: dict[str, Any]) -> None:
    """A `once` coupon is spent by the first invoice it reduced."""
    used = {entry["discount"] for entry in invoice["total_discount_amounts"]}
    kept = []
    for discount_id in subscription.get("discounts") or []:
        discount = ctx.find("discount", discount_id)
        coupon = ctx.find("coupon", discount["source"]["coupon"]) if discount else None
        if discount and coupon and coupon["duration"] == "once" and discount_id in used:
            ctx.emit("customer.discount.deleted", discount, at=invoice["created"])
            continue
        kept.append(discount_id)
    subscription["discounts"] = kept


def _trial_end(params: dict[str, Any], prices: list[dict[str, Any]], now: int) -> int | None:
    trial_end = params.get("trial_end")
    if trial_end == "now":
        return None
    if trial_end is not None:
        trial_end = int(trial_end)
        if trial_end <= now:
            raise StripeError(
                400, "Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end"
            )
        return trial_end
    days = params.get("trial_period_days")
    if days is None and params.get("trial_from_plan"):
        days = max((p["recurring"].get("trial_period_days") or 0 for p in prices), default=0) or None
    return now + int(days) * 86400 if days else None


def _billing_cycle_anchor(params: dict[str, Any], now: int, interval: str, count: int) -> int | None:
    """A future billing cycle anchor (given, or from billing_cycle_anchor_config), else None."""
    anchor = params.get("billing_cycle_anchor")
    config = params.get("billing_cycle_anchor_config")
    if anchor is None and config:
        moment = datetime.fromtimestamp(now, UTC)
        month = int(config.get("month") or moment.month) if interval == "year" else moment.month
        year = moment.year
        for _ in range(3):
            day = min(int(config["day_of_month"]), calendar.monthrange(year, month)[1])
            candidate = moment.replace(
                year=year,
                month=month,
                day=day,
                hour=int(config.get("hour", moment.hour)),
                minute=int(config.get("minute", moment.minute)),
                second=int(config.get("second", moment.second)),
            )
            if candidate.timestamp() > now:
                anchor = int(candidate.timestamp())
                break
            if interval == "year":
                year += 1
            else:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    if anchor is None:
        return None
    anchor = int(anchor)
    if anchor <= now or anchor > add_interval(now, interval, count):
        raise StripeError(
            400,
            "billing_cycle_anchor must be in the future and within one billing period of now.",
            param="billing_cycle_anchor",
        )
    return anchor


def _partial_period_lines(
    ctx: Ctx, subscription: dict[str, Any], anchor: int, interval: str, count: int, proration: str
) -> list[dict[str, Any]]:
    """First-invoice lines up to the anchor: the prorated share of a full period (or free)."""
    now = subscription["_period_start"]
    full_start = add_interval(anchor, interval, -count)
    fraction = (anchor - now) / max(anchor - full_start, 1)
    lines = []
    for item_id in subscription["_item_ids"]:
        item = ctx.get("subscription_item", item_id)
        line = _item_line(ctx, subscription, item, (now, anchor), trial=False)
        if proration == "none":
            line["amount"] = 0
        else:
            line["amount"] = round(line["amount"] * fraction)
            when = datetime.fromtimestamp(now, UTC).strftime("%d %b %Y")
            line["description"] = f"Remaining time on {line['description'].split(' (at ')[0]} after {when}"
        line["subtotal"] = line["amount"]
        lines.append(line)
    return lines


@route("POST", "/v1/subscriptions", "SubscriptionCreateParams")
def create_subscription(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    customer_id = params.get("customer")
    if not customer_id:
        raise StripeError(
            400, "Missing required param: customer.", code="parameter_missing", param="customer"
        )
    customer = ctx.get("customer", customer_id, "customer")
    specs = params.get("items") or []
    if not specs:
        raise StripeError(400, "Missing required param: items.", code="parameter_missing", param="items")
    prices = [_price_for_item(ctx, spec, f"items[{i}]") for i, spec in enumerate(specs)]
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
    if len(intervals) > 1 or len({p["currency"] for p in prices}) > 1:
        raise StripeError(
            400,
            "All prices on a subscription must have the same `recurring.interval`, `recurring.interval_count` and currency.",
            param="items",
        )
    now = ctx.now_for_customer(customer_id)
    trial_end = _trial_end(params, prices, now)
    default_pm = unset(params.get("default_payment_method"))
    if default_pm:
        pm = ctx.get("payment_method", default_pm, "default_payment_method")
        if pm.get("customer") != customer_id:
            raise StripeError(
                400, "The PaymentMethod must be attached to the customer.", param="default_payment_method"
            )
    behavior = params.get("payment_behavior", "allow_incomplete")
    collection = params.get("collection_method", "charge_automatically")
    has_pm = bool(default_pm or customer["invoice_settings"].get("default_payment_method"))
    if (
        not trial_end
        and collection == "charge_automatically"
        and not has_pm
        and behavior != "default_incomplete"
    ):
        raise StripeError(
            400,
            "This customer has no attached payment source or default payment method. Please consider adding a default payment method.",
            code="resource_missing",
        )
    subscription_id = new_id("sub_")
    automatic_tax = params.get("automatic_tax") or {}
    require_stripe_tax(ctx, bool(automatic_tax.get("enabled")), "automatic_tax[enabled]")
    interval, count = next(iter(intervals))
    subscription = shaped(
        "subscription",
        id=subscription_id,
        billing_cycle_anchor=trial_end or now,
        cancel_at=params.get("cancel_at"),
        cancel_at_period_end=params.get("cancel_at_period_end", False),
        collection_method=collection,
        created=now,
        customer=customer_id,
        days_until_due=params.get("days_until_due"),
        default_payment_method=default_pm,
        default_tax_rates=unset(params.get("default_tax_rates")) or [],
        description=params.get("description"),
        metadata=apply_metadata({}, params.get("metadata")),
        start_date=now,
        status="trialing" if trial_end else "incomplete",
        test_clock=customer.get("test_clock"),
        trial_end=trial_end,
        trial_start=now if trial_end else None,
    )
    subscription["automatic_tax"] = {
        "enabled": bool(automatic_tax.get("enabled")),
        "liability": {"type": "self"} if automatic_tax.get("enabled") else None,
        "disabled_reason": None,
    }
    subscription["_item_ids"] = []
    subscription["_interval"] = [interval, count]
    end_behavior = ((params.get("trial_settings") or {}).get("end_behavior") or {}).get(
        "missing_payment_method"
    )
    subscription["trial_settings"] = {
        "end_behavior": {"missing_payment_method": end_behavior or "create_invoice"}
    }
    for price, spec in zip(prices, specs, strict=True):
        subscription["_item_ids"].append(_new_item(ctx, subscription_id, price, spec, now)["id"])
    anchor = _billing_cycle_anchor(params, now, interval, count) if not trial_end else None
    end = trial_end or anchor or add_interval(now, interval, count)
    if anchor is not None:
        subscription["billing_cycle_anchor"] = anchor
    _set_period(ctx, subscription, now, end)
    subscription["discounts"] = _discounts_from(
        ctx, unset(params.get("discounts")), customer_id, subscription_id, now
    )
    save_subscription(ctx, subscription)
    created_event = ctx.emit("customer.subscription.created", subscription, at=now)
    first_lines = None
    if anchor is not None:
        first_lines = _partial_period_lines(
            ctx, subscription, anchor, interval, count, params.get("proration_behavior", "create_prorations")
        )
    invoice = _subscription_invoice(
        ctx, subscription, "subscription_create", trial=bool(trial_end), lines=first_lines, auto_advance=False
    )
    save_subscription(ctx, subscription)
    if behavior == "default_incomplete" and invoice["amount_due"] > 0:
        finalize(ctx, invoice, pay=False)
    else:
        finalize(ctx, invoice, pay=False)
        decline = attempt_payment(ctx, invoice, announce_status=False)
        if decline is not None and behavior == "error_if_incomplete":
            raise card_declined("generic_decline" if decline == "no_payment_method" else decline)
        # Paid while being created: like Stripe, `customer.subscription.created` shows it active.
        # (Deliveries go out after the request, so they carry this final state.)
        from app.sandbox.server import public

        created_event["data"]["object"] = public(ctx.get("subscription", subscription_id))
        ctx.put(created_event)
    return ctx.get("subscription", subscription_id)


@route("GET", "/v1/subscriptions/{id}", "SubscriptionRetrieveParams")
def retrieve_subscription(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("subscription", path["id"])


@route("GET", "/v1/subscriptions", "SubscriptionListParams")
def list_subscriptions(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    status = params.get("status")

    def keep(subscription: dict[str, Any]) -> bool:
        if "customer" in params and subscription["customer"] != params["customer"]:
            return False
        if "price" in params and not any(
            i["price"]["id"] == params["price"] for i in subscription["items"]["data"]
        ):
            return False
        if status in (None, ""):
            return subscription["status"] != "canceled"
        return status == "all" or subscription["status"] == status

    return ctx.page("subscription", params, "/v1/subscriptions", keep)


@route("GET", "/v1/subscriptions/search", "SubscriptionSearchParams")
def search_subscriptions(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    from app.sandbox.resources.customers import search_matches

    matches = [s for s in ctx.all("subscription") if search_matches(s, params["query"])]
    limit = params.get("limit", 10)
    return {
        "object": "search_result",
        "data": matches[:limit],
        "has_more": len(matches) > limit,
        "next_page": None,
        "url": "/v1/subscriptions/search",
    }


def _proration_items(
    ctx: Ctx,
    subscription: dict[str, Any],
    old: tuple[dict[str, Any], int] | None,
    new: tuple[dict[str, Any], int] | None,
    now: int,
) -> list[dict[str, Any]]:
    """Pending invoice items crediting unused time of the old price and charging the new one."""
    start, end = _period(subscription)
    if end <= start or now >= end:
        return []
    fraction = (end - now) / (end - start)
    when = datetime.fromtimestamp(now, UTC).strftime("%d %b %Y")
    items = []
    for sign, pair, label in ((-1, old, "Unused time on"), (1, new, "Remaining time on")):
        if pair is None:
            continue
        price, quantity = pair
        amount = sign * round(price_amount(price, quantity) * fraction)
        if amount == 0:
            continue
        product = ctx.find("product", price["product"]) or {"name": price["product"]}
        items.append(
            _new_invoice_item(
                ctx,
                customer_id=subscription["customer"],
                amount=amount,
                currency=price["currency"],
                description=f"{label} {quantity} × {product['name']} after {when}",
                period=(now, end),
                price=price,
                quantity=quantity,
                subscription_id=subscription["id"],
                proration=True,
            )
        )
    return items


def _change_items(
    ctx: Ctx, subscription: dict[str, Any], specs: list[dict[str, Any]], proration: str, now: int
) -> bool:
    prorate = proration != "none" and subscription["status"] != "trialing"
    changed = False
    for index, spec in enumerate(specs):
        param = f"items[{index}]"
        item_id = spec.get("id")
        if item_id:
            item = ctx.get("subscription_item", item_id, f"{param}[id]")
            if item["subscription"] != subscription["id"]:
                raise StripeError(
                    400,
                    f"Subscription item {item_id} does not belong to this subscription.",
                    param=f"{param}[id]",
                )
            old = (item["price"], item["quantity"])
            if spec.get("deleted"):
                subscription["_item_ids"].remove(item_id)
                ctx.delete(item_id)
                if prorate:
                    _proration_items(ctx, subscription, old, None, now)
                changed = True
                continue
            if "price" in spec or "price_data" in spec:
                item["price"] = _price_for_item(ctx, spec, param)
                item["plan"] = _plan_view(item["price"])
            if "quantity" in spec:
                item["quantity"] = spec["quantity"]
            if "metadata" in spec:
                item["metadata"] = apply_metadata(item.get("metadata"), spec["metadata"])
            ctx.put(item)
            if (item["price"]["id"], item["quantity"]) != (old[0]["id"], old[1]):
                changed = True
                if prorate:
                    _proration_items(ctx, subscription, old, (item["price"], item["quantity"]), now)
        else:
            price = _price_for_item(ctx, spec, param)
            item = _new_item(ctx, subscription["id"], price, spec, now)
            item["current_period_start"], item["current_period_end"] = _period(subscription)
            ctx.put(item)
            subscription["_item_ids"].append(item["id"])
            changed = True
            if prorate:
                _proration_items(ctx, subscription, None, (price, item["quantity"]), now)
    if not subscription["_item_ids"]:
        raise StripeError(400, "A subscription must have at least one active plan.", param="items")
    return changed


@route("POST", "/v1/subscriptions/{id}", "SubscriptionUpdateParams")
def update_subscription(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    subscription = ctx.get("subscription", path["id"])
    if subscription["status"] in {"canceled", "incomplete_expired"}:
        raise StripeError(
            400, "A canceled subscription can only update its cancellation_details and metadata.", param=None
        )
    before = ctx.get("subscription", path["id"])
    now = ctx.now_for_customer(subscription["customer"])
    proration = params.get("proration_behavior", "create_prorations")
    if "items" in params:
        changed = _change_items(ctx, subscription, params["items"], proration, now)
        if changed and proration == "always_invoice" and subscription["status"] != "trialing":
            save_subscription(ctx, subscription)
            invoice = _subscription_invoice(
                ctx, subscription, "subscription_update", trial=False, lines=[], auto_advance=False
            )
            finalize(ctx, invoice)
            subscription["latest_invoice"] = invoice["id"]
            subscription["status"] = ctx.get("subscription", subscription["id"])["status"]
    if "metadata" in params:
        subscription["metadata"] = apply_metadata(subscription.get("metadata"), params["metadata"])
    for name in ("description", "days_until_due", "collection_method"):
        if name in params:
            subscription[name] = unset(params[name])
    if "default_payment_method" in params:
        pm_id = unset(params["default_payment_method"])
        if pm_id:
            pm = ctx.get("payment_method", pm_id, "default_payment_method")
            if pm.get("customer") != subscription["customer"]:
                raise StripeError(
                    400, "The PaymentMethod must be attached to the customer.", param="default_payment_method"
                )
        subscription["default_payment_method"] = pm_id
    if "default_tax_rates" in params:
        subscription["default_tax_rates"] = unset(params["default_tax_rates"]) or []
    if "automatic_tax" in params:
        require_stripe_tax(ctx, bool(params["automatic_tax"].get("enabled")), "automatic_tax[enabled]")
        enabled = bool(params["automatic_tax"].get("enabled"))
        subscription["automatic_tax"] = {
            "enabled": enabled,
            "liability": {"type": "self"} if enabled else None,
            "disabled_reason": None,
        }
    if "discounts" in params:
        subscription["discounts"] = _discounts_from(
            ctx, unset(params["discounts"]), subscription["customer"], subscription["id"], now
        )
    if "cancel_at_period_end" in params:
        flag = params["cancel_at_period_end"]
        subscription["cancel_at_period_end"] = flag
        subscription["cancel_at"] = subscription["_period_end"] if flag else None
        subscription["canceled_at"] = now if flag else None
        subscription["cancellation_details"] = {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested" if flag else None,
        }
    if "cancel_at" in params:
        cancel_at = unset(params["cancel_at"])
        if cancel_at in ("max_period_end", "min_period_end"):
            cancel_at = subscription["_period_end"]
        subscription["cancel_at"] = int(cancel_at) if cancel_at is not None else None
        subscription["cancel_at_period_end"] = (
            cancel_at is not None and int(cancel_at) == subscription["_period_end"]
        )
    if "cancellation_details" in params:
        details = params["cancellation_details"]
        subscription["cancellation_details"] = {
            **(subscription.get("cancellation_details") or {}),
            **{k: unset(v) for k, v in details.items()},
        }
    if "trial_end" in params and subscription["status"] == "trialing":
        if params["trial_end"] == "now":
            subscription["trial_end"] = now
            _set_period(ctx, subscription, subscription["_period_start"], now)
        else:
            trial_end = int(params["trial_end"])
            subscription["trial_end"] = trial_end
            _set_period(ctx, subscription, subscription["_period_start"], trial_end)
    save_subscription(ctx, subscription)
    previous = changed_fields(before, subscription)
    previous = {k: v for k, v in previous.items() if not k.startswith("_")}
    if previous:
        ctx.emit("customer.subscription.updated", subscription, previous, at=now)
    if params.get("trial_end") == "now":
        process_due(ctx, now, customer_ids={subscription["customer"]})
        subscription = ctx.get("subscription", subscription["id"])
    return subscription


@route("POST", "/v1/subscriptions/{id}/resume", "SubscriptionResumeParams")
def resume_subscription(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    subscription = ctx.get("subscription", path["id"])
    if subscription.get("pause_collection") is None and subscription["status"] != "paused":
        raise StripeError(400, "Only paused subscriptions can be resumed.")
    now = ctx.now_for_customer(subscription["customer"])
    previous = {"status": subscription["status"]}
    subscription["pause_collection"] = None
    subscription["status"] = "active"
    if previous["status"] == "paused":
        # Like Stripe's default (billing_cycle_anchor=now): a new period starts and is invoiced.
        interval, count = subscription["_interval"]
        _set_period(ctx, subscription, now, add_interval(now, interval, count))
        subscription["billing_cycle_anchor"] = now
        invoice = _subscription_invoice(
            ctx, subscription, "subscription_cycle", trial=False, auto_advance=False
        )
        save_subscription(ctx, subscription)
        ctx.emit("customer.subscription.resumed", subscription, at=now)
        ctx.emit("customer.subscription.updated", subscription, previous, at=now)
        finalize(ctx, invoice)
        return ctx.get("subscription", subscription["id"])
    save_subscription(ctx, subscription)
    return subscription


def cancel_subscription_now(
    ctx: Ctx, subscription: dict[str, Any], *, reason: str, at: int | None = None
) -> dict[str, Any]:
    now = at if at is not None else ctx.now_for_customer(subscription["customer"])
    previous = {
        "status": subscription["status"],
        "canceled_at": subscription.get("canceled_at"),
        "ended_at": subscription.get("ended_at"),
    }
    subscription.update(
        status="canceled",
        canceled_at=subscription.get("canceled_at") or now,
        ended_at=now,
        cancel_at=subscription.get("cancel_at"),
    )
    details = dict(subscription.get("cancellation_details") or {})
    details["reason"] = details.get("reason") or reason
    subscription["cancellation_details"] = details
    save_subscription(ctx, subscription)
    ctx.emit("customer.subscription.deleted", subscription, previous, at=now)
    return subscription


@route("DELETE", "/v1/subscriptions/{id}", "SubscriptionCancelParams")
def cancel_subscription(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    subscription = ctx.get("subscription", path["id"])
    if subscription["status"] == "canceled":
        raise StripeError(404, f"No such subscription: '{path['id']}'", code="resource_missing", param="id")
    if "cancellation_details" in params:
        subscription["cancellation_details"] = {
            "comment": None,
            "feedback": None,
            "reason": None,
            **{k: unset(v) for k, v in params["cancellation_details"].items()},
        }
    now = ctx.now_for_customer(subscription["customer"])
    if params.get("prorate") and subscription["status"] == "active":
        for item_id in subscription["_item_ids"]:
            item = ctx.get("subscription_item", item_id)
            _proration_items(ctx, subscription, (item["price"], item["quantity"]), None, now)
    cancel_subscription_now(ctx, subscription, reason="cancellation_requested")
    if params.get("invoice_now"):
        customer = ctx.get("customer", subscription["customer"])
        pending = [i for i in ctx.of_customer("invoiceitem", customer["id"]) if not i.get("invoice")]
        if pending:
            invoice = new_invoice(
                ctx,
                customer,
                billing_reason="subscription_update",
                subscription=subscription,
                auto_advance=False,
            )
            finalize(ctx, invoice)
    return ctx.get("subscription", subscription["id"])


# -- subscription items -----------------------------------------------------------------------
@route("POST", "/v1/subscription_items", "SubscriptionItemCreateParams")
def create_subscription_item(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    subscription = ctx.get("subscription", params["subscription"], "subscription")
    spec = {k: params[k] for k in ("price", "price_data", "quantity", "metadata", "tax_rates") if k in params}
    before = set(subscription["_item_ids"])
    update_subscription(
        ctx,
        {"items": [spec], "proration_behavior": params.get("proration_behavior", "create_prorations")},
        {"id": subscription["id"]},
    )
    subscription = ctx.get("subscription", subscription["id"])
    new_id_ = next(i for i in subscription["_item_ids"] if i not in before)
    return ctx.get("subscription_item", new_id_)


@route("GET", "/v1/subscription_items/{id}", "SubscriptionItemRetrieveParams")
def retrieve_subscription_item(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("subscription_item", path["id"])


@route("POST", "/v1/subscription_items/{id}", "SubscriptionItemUpdateParams")
def update_subscription_item(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    item = ctx.get("subscription_item", path["id"])
    spec = {
        "id": item["id"],
        **{k: params[k] for k in ("price", "price_data", "quantity", "metadata") if k in params},
    }
    update_subscription(
        ctx,
        {"items": [spec], "proration_behavior": params.get("proration_behavior", "create_prorations")},
        {"id": item["subscription"]},
    )
    return ctx.get("subscription_item", item["id"])


@route("DELETE", "/v1/subscription_items/{id}", "SubscriptionItemDeleteParams")
def delete_subscription_item(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    item = ctx.get("subscription_item", path["id"])
    update_subscription(
        ctx,
        {
            "items": [{"id": item["id"], "deleted": True}],
            "proration_behavior": params.get("proration_behavior", "create_prorations"),
        },
        {"id": item["subscription"]},
    )
    return {"id": item["id"], "object": "subscription_item", "deleted": True}


@route("GET", "/v1/subscription_items", "SubscriptionItemListParams")
def list_subscription_items(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    ctx.get("subscription", params["subscription"], "subscription")
    return ctx.page(
        "subscription_item",
        params,
        "/v1/subscription_items",
        lambda i: i["subscription"] == params["subscription"],
    )


# -- invoice items ----------------------------------------------------------------------------
def _new_invoice_item(
    ctx: Ctx,
    *,
    customer_id: str,
    amount: int,
    currency: str,
    description: str | None,
    period: tuple[int, int],
    price: dict[str, Any] | None = None,
    quantity: int = 1,
    subscription_id: str | None = None,
    proration: bool = False,
    invoice_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    discountable: bool = True,
) -> dict[str, Any]:
    now = ctx.now_for_customer(customer_id)
    item = shaped(
        "invoiceitem",
        id=new_id("ii_"),
        amount=amount,
        currency=currency,
        customer=customer_id,
        date=now,
        description=description,
        discountable=discountable and not proration,
        invoice=invoice_id,
        metadata=metadata or {},
        period={"start": period[0], "end": period[1]},
        proration=proration,
        quantity=quantity,
        net_amount=amount,
        test_clock=(ctx.find("customer", customer_id) or {}).get("test_clock"),
    )
    item["parent"] = (
        {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription_id, "subscription_item": None},
        }
        if subscription_id
        else None
    )
    item["pricing"] = {
        "type": "price_details",
        "price_details": {"price": price["id"], "product": price["product"]} if price else None,
        "unit_amount_decimal": str(amount // max(quantity, 1)),
    }
    item["quantity_decimal"] = str(quantity)
    ctx.put(item)
    ctx.emit("invoiceitem.created", item, at=now)
    return item


@route("POST", "/v1/invoiceitems", "InvoiceItemCreateParams")
def create_invoice_item(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    customer_id = params.get("customer")
    if not customer_id:
        raise StripeError(
            400, "Missing required param: customer.", code="parameter_missing", param="customer"
        )
    ctx.get("customer", customer_id, "customer")
    price = None
    price_id = (params.get("pricing") or {}).get("price")
    quantity = params.get("quantity", 1)
    if price_id:
        price = ctx.get("price", price_id, "pricing[price]")
        amount = price_amount(price, quantity)
        currency = price["currency"]
    elif "amount" in params:
        amount = params["amount"]
        currency = params.get("currency")
        if not currency:
            raise StripeError(
                400, "Missing required param: currency.", code="parameter_missing", param="currency"
            )
    elif "price_data" in params or "unit_amount_decimal" in params:
        data = params.get("price_data") or {}
        unit = int(
            float(
                data.get("unit_amount")
                or data.get("unit_amount_decimal")
                or params.get("unit_amount_decimal")
                or 0
            )
        )
        amount = unit * quantity
        currency = data.get("currency") or params.get("currency") or "usd"
    else:
        raise StripeError(
            400, "You must specify either `amount`, `pricing[price]` or `price_data`.", param="amount"
        )
    invoice_id = params.get("invoice")
    invoice = None
    if invoice_id:
        invoice = ctx.get("invoice", invoice_id, "invoice")
        if invoice["status"] != "draft":
            raise StripeError(400, "You can only add invoice items to draft invoices.", param="invoice")
    now = ctx.now_for_customer(customer_id)
    period = params.get("period") or {}
    item = _new_invoice_item(
        ctx,
        customer_id=customer_id,
        amount=amount,
        currency=currency.lower(),
        description=params.get("description"),
        period=(int(period.get("start", now)), int(period.get("end", now))),
        price=price,
        quantity=quantity,
        subscription_id=params.get("subscription"),
        invoice_id=invoice_id,
        metadata=apply_metadata({}, params.get("metadata")),
        discountable=params.get("discountable", True),
    )
    if invoice is not None:
        invoice["lines"]["data"].append({**_invoice_item_line(ctx, item), "invoice": invoice["id"]})
        _recompute(ctx, invoice)
        ctx.put(invoice)
        ctx.emit("invoice.updated", invoice, {"total": invoice["total"] - amount})
    return item


@route("GET", "/v1/invoiceitems/{id}", "InvoiceItemRetrieveParams")
def retrieve_invoice_item(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("invoiceitem", path["id"])


@route("POST", "/v1/invoiceitems/{id}", "InvoiceItemUpdateParams")
def update_invoice_item(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    item = ctx.get("invoiceitem", path["id"])
    before = dict(item)
    for name in ("description", "amount", "discountable"):
        if name in params:
            item[name] = unset(params[name])
    if "metadata" in params:
        item["metadata"] = apply_metadata(item.get("metadata"), params["metadata"])
    item["net_amount"] = item["amount"]
    ctx.put(item)
    ctx.emit("invoiceitem.updated", item, changed_fields(before, item))
    return item


@route("DELETE", "/v1/invoiceitems/{id}", "InvoiceItemDeleteParams")
def delete_invoice_item(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    item = ctx.get("invoiceitem", path["id"])
    if item.get("invoice"):
        invoice = ctx.find("invoice", item["invoice"])
        if invoice and invoice["status"] != "draft":
            raise StripeError(
                400, "This invoice item is attached to a finalized invoice and can't be deleted."
            )
        if invoice:
            invoice["lines"]["data"] = [
                line
                for line in invoice["lines"]["data"]
                if ((line.get("parent") or {}).get("invoice_item_details") or {}).get("invoice_item")
                != item["id"]
            ]
            _recompute(ctx, invoice)
            ctx.put(invoice)
    ctx.delete(item["id"])
    ctx.emit("invoiceitem.deleted", item)
    return {"id": item["id"], "object": "invoiceitem", "deleted": True}


@route("GET", "/v1/invoiceitems", "InvoiceItemListParams")
def list_invoice_items(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(item: dict[str, Any]) -> bool:
        if "customer" in params and item["customer"] != params["customer"]:
            return False
        if "invoice" in params and item.get("invoice") != params["invoice"]:
            return False
        return not (params.get("pending") and item.get("invoice"))

    return ctx.page("invoiceitem", params, "/v1/invoiceitems", keep)


# -- invoices ---------------------------------------------------------------------------------
@route("POST", "/v1/invoices", "InvoiceCreateParams")
def create_invoice(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    customer = ctx.get("customer", params.get("customer") or "", "customer")
    subscription = ctx.find("subscription", params.get("subscription"))
    require_stripe_tax(
        ctx, bool((params.get("automatic_tax") or {}).get("enabled")), "automatic_tax[enabled]"
    )
    invoice = new_invoice(
        ctx,
        customer,
        billing_reason="manual",
        subscription=subscription,
        include_pending=params.get("pending_invoice_items_behavior", "exclude") == "include",
        auto_advance=params.get("auto_advance", False),
        extra={
            "metadata": apply_metadata({}, params.get("metadata")),
            "description": params.get("description"),
            "collection_method": params.get("collection_method", "charge_automatically"),
            "default_payment_method": params.get("default_payment_method"),
            "automatic_tax": bool((params.get("automatic_tax") or {}).get("enabled")),
        },
    )
    if params.get("discounts"):
        invoice["discounts"] = _discounts_from(
            ctx, params["discounts"], customer["id"], None, invoice["created"]
        )
        _recompute(ctx, invoice)
        ctx.put(invoice)
    return invoice


@route("GET", "/v1/invoices/{id}", "InvoiceRetrieveParams")
def retrieve_invoice(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("invoice", path["id"])


@route("POST", "/v1/invoices/{id}", "InvoiceUpdateParams")
def update_invoice(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    before = dict(invoice)
    if invoice["status"] != "draft" and set(params) - {"metadata", "expand"}:
        raise StripeError(
            400,
            "You can only update the metadata of a finalized invoice.",
            param=next(iter(set(params) - {"metadata", "expand"})),
        )
    for name in ("description", "auto_advance", "collection_method", "default_payment_method", "footer"):
        if name in params:
            invoice[name] = unset(params[name])
    if "metadata" in params:
        invoice["metadata"] = apply_metadata(invoice.get("metadata"), params["metadata"])
    if "discounts" in params:
        invoice["discounts"] = _discounts_from(
            ctx, unset(params["discounts"]), invoice["customer"], None, ctx.now()
        )
        _recompute(ctx, invoice)
    ctx.put(invoice)
    ctx.emit(
        "invoice.updated",
        invoice,
        {k: v for k, v in changed_fields(before, invoice).items() if not k.startswith("_")},
    )
    return invoice


@route("DELETE", "/v1/invoices/{id}", "InvoiceDeleteParams")
def delete_invoice(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    if invoice["status"] != "draft":
        raise StripeError(400, "You can only delete draft invoices.")
    for item in ctx.of_customer("invoiceitem", invoice["customer"]):
        if item.get("invoice") == invoice["id"]:
            item["invoice"] = None
            ctx.put(item)
    ctx.delete(invoice["id"])
    ctx.emit("invoice.deleted", invoice)
    return {"id": invoice["id"], "object": "invoice", "deleted": True}


@route("GET", "/v1/invoices", "InvoiceListParams")
def list_invoices(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(invoice: dict[str, Any]) -> bool:
        if "customer" in params and invoice["customer"] != params["customer"]:
            return False
        if "subscription" in params and _invoice_subscription(invoice) != params["subscription"]:
            return False
        if "collection_method" in params and invoice["collection_method"] != params["collection_method"]:
            return False
        return not ("status" in params and invoice["status"] != params["status"])

    return ctx.page(
        "invoice", params, "/v1/invoices", keep, ("customer", "subscription", "collection_method", "status")
    )


@route("GET", "/v1/invoices/{id}/lines", "InvoiceListLinesParams")
def list_invoice_lines(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    from app.sandbox.wire import paginate

    invoice = ctx.get("invoice", path["id"])
    return paginate(invoice["lines"]["data"], params, f"/v1/invoices/{invoice['id']}/lines", "line item")


@route("POST", "/v1/invoices/{id}/finalize", "InvoiceFinalizeInvoiceParams")
def finalize_invoice(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    if invoice["status"] != "draft":
        raise StripeError(
            400, "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    if "auto_advance" in params:
        invoice["auto_advance"] = params["auto_advance"]
    # Like Stripe, an explicit finalisation only charges when auto_advance is on.
    return finalize(ctx, invoice, pay=bool(invoice["auto_advance"]))


@route("POST", "/v1/invoices/{id}/pay", "InvoicePayParams")
def pay_invoice(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    if invoice["status"] == "draft":
        finalize(ctx, invoice, pay=False)
    if invoice["status"] == "paid":
        raise StripeError(400, "Invoice is already paid")
    if invoice["status"] != "open":
        raise StripeError(400, f"This invoice can't be paid because it is {invoice['status']}.")
    if params.get("paid_out_of_band"):
        # Paid outside Stripe: settle without charging anything.
        attempt_payment(ctx, invoice, {"_charge_fails": None})
        return ctx.get("invoice", invoice["id"])
    pm = None
    if params.get("payment_method"):
        pm = resolve_payment_method(ctx, params["payment_method"])
    decline = attempt_payment(ctx, invoice, pm)
    if decline is not None:
        raise card_declined("generic_decline" if decline == "no_payment_method" else decline)
    return ctx.get("invoice", invoice["id"])


@route("POST", "/v1/invoices/{id}/void", "InvoiceVoidInvoiceParams")
def void_invoice(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    if invoice["status"] != "open":
        raise StripeError(400, f"You can only void open invoices (this one is {invoice['status']}).")
    now = ctx.now_for_customer(invoice["customer"])
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = now
    invoice["next_payment_attempt"] = None
    ctx.put(invoice)
    ctx.emit("invoice.voided", invoice, {"status": "open"})
    return invoice


@route("POST", "/v1/invoices/{id}/mark_uncollectible", "InvoiceMarkUncollectibleParams")
def mark_uncollectible(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    invoice = ctx.get("invoice", path["id"])
    if invoice["status"] != "open":
        raise StripeError(400, "You can only mark open invoices as uncollectible.")
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = ctx.now_for_customer(invoice["customer"])
    invoice["next_payment_attempt"] = None
    ctx.put(invoice)
    ctx.emit("invoice.marked_uncollectible", invoice, {"status": "open"})
    return invoice


# -- time: renewals, trial ends, finalisation -------------------------------------------------
def _due_moments(ctx: Ctx, customer_ids: set[str] | None, clock_id: str | None) -> list[tuple[int, str, str]]:
    """(when, kind, object id) of everything that becomes due at some moment."""
    store = ctx.store
    clocks: dict[str, str | None] = {}

    def in_scope(customer_id: str) -> bool:
        if customer_ids is not None:
            return customer_id in customer_ids
        if customer_id not in clocks:
            located = store.locate(customer_id)
            clocks[customer_id] = store.peek(customer_id).get("test_clock") if located else None
        return clocks[customer_id] == clock_id

    # Read-only scans use the store's shared decoded objects (no copies).
    moments: list[tuple[int, str, str]] = []
    for subscription_id in store.peek_ids(ctx.account, "subscription"):
        subscription = store.peek(subscription_id)
        if subscription["status"] not in LIVE_STATUSES or not in_scope(subscription["customer"]):
            continue
        if subscription["status"] == "incomplete":
            moments.append((subscription["created"] + INCOMPLETE_EXPIRY_SECONDS, "expire", subscription_id))
            continue
        trial_end = subscription.get("trial_end")
        if (
            subscription["status"] == "trialing"
            and trial_end
            and not subscription.get("_trial_will_end_sent")
        ):
            # Stripe warns three days before a trial ends (when the trial is longer than that).
            warn_at = trial_end - TRIAL_WILL_END_SECONDS
            if warn_at > (subscription.get("trial_start") or 0):
                moments.append((warn_at, "trial_will_end", subscription_id))
        cancel_at = subscription.get("cancel_at")
        if cancel_at and cancel_at <= subscription["_period_end"]:
            moments.append((cancel_at, "cancel", subscription_id))
        else:
            moments.append((subscription["_period_end"], "renew", subscription_id))
    for invoice_id in store.peek_ids(ctx.account, "invoice"):
        invoice = store.peek(invoice_id)
        if invoice["status"] not in {"draft", "open"} or not in_scope(invoice["customer"]):
            continue
        if (
            invoice["status"] == "draft"
            and invoice.get("auto_advance")
            and invoice.get("automatically_finalizes_at")
        ):
            moments.append((invoice["automatically_finalizes_at"], "finalize", invoice_id))
        elif invoice["status"] == "open" and invoice.get("next_payment_attempt"):
            moments.append((invoice["next_payment_attempt"], "retry", invoice_id))
    return moments


def process_due(
    ctx: Ctx, until: int, *, customer_ids: set[str] | None = None, clock_id: str | None = None
) -> int:
    """Run everything due up to `until`, in time order. Returns how many steps ran."""
    steps = 0
    while steps < 10_000:
        due = [m for m in _due_moments(ctx, customer_ids, clock_id) if m[0] <= until]
        if not due:
            break
        when, kind, object_id = min(due)
        ctx.fixed_now = when
        try:
            _run_step(ctx, when, kind, object_id)
        finally:
            ctx.fixed_now = None
        steps += 1
    return steps


def _run_step(ctx: Ctx, when: int, kind: str, object_id: str) -> None:
    if kind == "finalize":
        invoice = ctx.get("invoice", object_id)
        finalize(ctx, invoice)
        return
    if kind == "retry":
        invoice = ctx.get("invoice", object_id)
        attempt_payment(ctx, invoice)
        return
    subscription = ctx.get("subscription", object_id)
    if kind == "expire":
        previous = {"status": subscription["status"]}
        subscription["status"] = "incomplete_expired"
        subscription["ended_at"] = when
        save_subscription(ctx, subscription)
        ctx.emit("customer.subscription.updated", subscription, previous, at=when)
        return
    if kind == "cancel":
        cancel_subscription_now(ctx, subscription, reason="cancellation_requested", at=when)
        return
    if kind == "trial_will_end":
        subscription["_trial_will_end_sent"] = True
        save_subscription(ctx, subscription)
        ctx.emit("customer.subscription.trial_will_end", subscription, at=when)
        return
    if subscription["status"] == "trialing" and _trial_ends_without_payment_method(ctx, subscription):
        behavior = ((subscription.get("trial_settings") or {}).get("end_behavior") or {}).get(
            "missing_payment_method"
        )
        if behavior == "cancel":
            cancel_subscription_now(ctx, subscription, reason="cancellation_requested", at=when)
            return
        if behavior == "pause":
            previous_status = {"status": subscription["status"]}
            subscription["status"] = "paused"
            save_subscription(ctx, subscription)
            ctx.emit("customer.subscription.paused", subscription, at=when)
            ctx.emit("customer.subscription.updated", subscription, previous_status, at=when)
            return
    # Renewal (or the end of a trial): a new period and a draft invoice finalised an hour later.
    interval, count = subscription["_interval"]
    start = subscription["_period_end"]
    end = add_interval(start, interval, count)
    was_trialing = subscription["status"] == "trialing"
    previous: dict[str, Any] = {"items": subscription["items"]}
    _set_period(ctx, subscription, start, end)
    _expire_discounts(ctx, subscription, start)
    if was_trialing:
        previous["status"] = "trialing"
        subscription["status"] = "active"
    invoice = _subscription_invoice(ctx, subscription, "subscription_cycle", trial=False)
    save_subscription(ctx, subscription)
    ctx.emit("customer.subscription.updated", subscription, previous, at=when)
    if was_trialing and invoice["amount_due"] == 0:
        finalize(ctx, invoice)


def _trial_ends_without_payment_method(ctx: Ctx, subscription: dict[str, Any]) -> bool:
    if subscription.get("default_payment_method"):
        return False
    customer = ctx.find("customer", subscription["customer"]) or {}
    return not (customer.get("invoice_settings") or {}).get("default_payment_method")


def _expire_discounts(ctx: Ctx, subscription: dict[str, Any], now: int) -> None:
    kept = []
    for discount_id in subscription.get("discounts") or []:
        discount = ctx.find("discount", discount_id)
        if discount and discount.get("end") and discount["end"] <= now:
            ctx.emit("customer.discount.deleted", discount, at=now)
            continue
        kept.append(discount_id)
    subscription["discounts"] = kept


# -- test clocks ------------------------------------------------------------------------------
@route("POST", "/v1/test_helpers/test_clocks", "test_helpers.TestClockCreateParams")
def create_test_clock(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    now = ctx.now()
    clock = shaped(
        "test_helpers.test_clock",
        id=new_id("clock_"),
        created=now,
        deletes_after=now + 30 * 86400,
        frozen_time=params["frozen_time"],
        name=params.get("name"),
        status="ready",
        status_details={},
    )
    ctx.put(clock)
    ctx.emit("test_helpers.test_clock.created", clock)
    return clock


@route("GET", "/v1/test_helpers/test_clocks/{id}", "test_helpers.TestClockRetrieveParams")
def retrieve_test_clock(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("test_helpers.test_clock", path["id"])


@route("GET", "/v1/test_helpers/test_clocks", "test_helpers.TestClockListParams")
def list_test_clocks(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    return ctx.page("test_helpers.test_clock", params, "/v1/test_helpers/test_clocks")


@route("DELETE", "/v1/test_helpers/test_clocks/{id}", "test_helpers.TestClockDeleteParams")
def delete_test_clock(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    clock = ctx.get("test_helpers.test_clock", path["id"])
    ctx.delete(clock["id"])
    ctx.emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock["id"], "object": "test_helpers.test_clock", "deleted": True}


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance", "test_helpers.TestClockAdvanceParams")
def advance_test_clock(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    clock = ctx.get("test_helpers.test_clock", path["id"])
    target = params["frozen_time"]
    if target < clock["frozen_time"]:
        raise StripeError(
            400, "The frozen time cannot be before the current frozen time.", param="frozen_time"
        )
    ctx.emit("test_helpers.test_clock.advancing", {**clock, "status": "advancing"})
    # Steps run at their own moments; the clock shows each moment while it runs.
    customer_ids = {c["id"] for c in ctx.all("customer") if c.get("test_clock") == clock["id"]}
    while True:
        due = [m for m in _due_moments(ctx, customer_ids, None) if m[0] <= target]
        if not due:
            break
        when = min(due)[0]
        clock["frozen_time"] = max(clock["frozen_time"], when)
        ctx.put(clock)
        process_due(ctx, when, customer_ids=customer_ids)
    clock["frozen_time"] = target
    clock["status"] = "ready"
    ctx.put(clock)
    ctx.emit("test_helpers.test_clock.ready", clock)
    return clock


# -- previews ---------------------------------------------------------------------------------
@route("POST", "/v1/invoices/create_preview", "InvoiceCreatePreviewParams")
def preview_invoice(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    """The invoice a change (or the next renewal) would produce, computed and then undone."""
    store = ctx.store
    store.commit()  # keep what the request did before (the account) out of the undo below
    try:
        return _preview(ctx, params)
    finally:
        store.rollback()
        ctx.fixed_now = None


def _preview(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    subscription = ctx.find("subscription", params.get("subscription"))
    if params.get("subscription") and subscription is None:
        ctx.get("subscription", params["subscription"], "subscription")
    customer_id = subscription["customer"] if subscription else params.get("customer")
    customer = ctx.get("customer", customer_id or "", "customer")
    details = params.get("subscription_details") or {}
    if details.get("proration_date"):
        ctx.fixed_now = int(details["proration_date"])
    if subscription is None:
        if not details.get("items"):
            raise StripeError(
                400,
                "Pass `subscription` or `subscription_details[items]` to preview an invoice.",
                param="subscription_details[items]",
            )
        create: dict[str, Any] = {
            "customer": customer["id"],
            "items": details["items"],
            "payment_behavior": "default_incomplete",
        }
        for name in ("trial_end", "default_tax_rates"):
            if name in details:
                create[name] = details[name]
        if params.get("discounts"):
            create["discounts"] = params["discounts"]
        if (params.get("automatic_tax") or {}).get("enabled"):
            create["automatic_tax"] = {"enabled": True}
        created = create_subscription(ctx, create, {})
        return _as_preview(ctx.get("invoice", created["latest_invoice"]))
    proration = details.get("proration_behavior", "create_prorations")
    update = {
        k: details[k]
        for k in ("items", "cancel_at_period_end", "trial_end", "default_tax_rates")
        if k in details
    }
    if params.get("discounts") is not None:
        update["discounts"] = params["discounts"]
    if update:
        latest = subscription.get("latest_invoice")
        update_subscription(ctx, {**update, "proration_behavior": proration}, {"id": subscription["id"]})
        subscription = ctx.get("subscription", subscription["id"])
        if proration == "always_invoice" and subscription.get("latest_invoice") != latest:
            return _as_preview(ctx.get("invoice", subscription["latest_invoice"]))
    # The next renewal: the coming period's lines plus whatever is pending (prorations).
    interval, count = subscription["_interval"]
    start = subscription["_period_end"]
    _set_period(ctx, subscription, start, add_interval(start, interval, count))
    _expire_discounts(ctx, subscription, start)
    ctx.fixed_now = start
    invoice = _subscription_invoice(ctx, subscription, "upcoming", trial=False)
    return _as_preview(invoice)


def _as_preview(invoice: dict[str, Any]) -> dict[str, Any]:
    preview = dict(invoice)
    preview["id"] = "upcoming_" + invoice["id"]
    preview["number"] = None
    return preview
