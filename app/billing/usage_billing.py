"""Usage on the renewal invoice: on `invoice.created` (subscription_cycle) add one invoice item
per USAGE_BASED charge with the closed period's quantity, while the invoice is still a draft.

Stripe finalises a renewal invoice about an hour after creating it (the "invoice finalization
grace period", a Dashboard setting); the items must land before that, so the integration
records the grace period and warns when it is under an hour. Redelivered or replayed events
never bill twice: each item has the idempotency key `tg-<env>-usage-<invoice>-<charge>` and
the invoice's existing items are checked for our `tollgateChargeId` first. An invoice that was
finalized before the event was handled gets its usage as pending items for the next invoice.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from app.billing import mapping as m
from app.billing.events import EventContext, NotOurs, handles
from app.billing.models import StripeObject
from app.catalog.models import BillingModel, BillingPeriod, Charge, Feature
from app.customers.models import Customer
from app.subscriptions.models import Subscription, UsageEvent, UsageUpdateBehavior

logger = logging.getLogger(__name__)


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.month - 1 - months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def closed_period(invoice: Any, period: BillingPeriod) -> tuple[dt.datetime, dt.datetime]:
    """The period whose usage this renewal invoice bills: the one that just ended."""
    starts = [
        line.period.start
        for line in (invoice.lines.data if invoice.lines else [])
        if getattr(line, "period", None) and line.period.start
    ]
    boundary = min(starts) if starts else invoice.period_end
    end = dt.datetime.fromtimestamp(boundary, dt.UTC)
    return months_before(end, 1 if period is BillingPeriod.MONTHLY else 12), end


async def usage_quantity(
    ctx: EventContext, customer_pk: int, feature_pk: int, start: dt.datetime, end: dt.datetime
) -> int:
    rows = (
        await ctx.session.execute(
            select(UsageEvent.value, UsageEvent.behavior)
            .where(
                UsageEvent.customer_pk == customer_pk,
                UsageEvent.feature_pk == feature_pk,
                UsageEvent.timestamp >= start,
                UsageEvent.timestamp < end,
            )
            .order_by(UsageEvent.timestamp, UsageEvent.pk)
        )
    ).all()
    total = 0
    for value, behavior in rows:
        total = value if behavior is UsageUpdateBehavior.SET else total + value
    return max(total, 0)


@handles("invoice.created")
async def on_invoice_created(ctx: EventContext, event: dict[str, Any]) -> None:
    invoice_id = event["data"]["object"]["id"]
    invoice = await ctx.client.v1.invoices.retrieve_async(invoice_id)
    parent = getattr(invoice, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent else None
    stripe_sub = getattr(details, "subscription", None) or getattr(invoice, "subscription", None)
    if not stripe_sub:
        raise NotOurs(invoice_id)  # a one-off invoice: Tollgate only bills subscriptions
    stripe_sub = stripe_sub if isinstance(stripe_sub, str) else stripe_sub.id
    pk = await ctx.session.scalar(
        select(StripeObject.entity_pk).where(
            StripeObject.environment_pk == ctx.environment.pk,
            StripeObject.entity_type == "subscription",
            StripeObject.stripe_id == stripe_sub,
        )
    )
    if pk is None:
        raise NotOurs(stripe_sub)  # an invoice of a subscription that is not ours
    if invoice.billing_reason != "subscription_cycle":
        return  # ours, but only renewals carry usage
    # Finalized already (the account's grace period is shorter than our worker's lag): the
    # usage is not lost but billed on the customer's next invoice, as pending invoice items.
    late = invoice.status != "draft"
    sub = await ctx.session.get_one(Subscription, pk)
    customer = await ctx.session.get_one(Customer, sub.customer_pk)
    if sub.price_version_pk is None or customer.billing_id is None:
        return
    charges = [
        c
        for c in (
            await ctx.session.scalars(select(Charge).where(Charge.price_version_pk == sub.price_version_pk))
        ).all()
        if c.billing_model is BillingModel.USAGE_BASED
        and c.billing_period is sub.billing_period
        and c.currency.lower() == invoice.currency
        and c.feature_pk is not None
    ]
    if not charges:
        return
    where = {"customer": customer.billing_id, "pending": True} if late else {"invoice": invoice_id}
    existing = await ctx.client.v1.invoice_items.list_async(params={**where, "limit": 100})  # type: ignore[arg-type]
    billed = {
        m.metadata_of(item).get("tollgateChargeId")
        for item in existing.data
        if not late or m.metadata_of(item).get("tollgateInvoiceId") == invoice_id
    }
    if late:
        logger.warning(
            "invoice %s was finalized before usage could be added (grace period under 1 hour?): "
            "its usage goes on the customer's next invoice",
            invoice_id,
        )
    start, end = closed_period(invoice, sub.billing_period)
    for charge in charges:
        if str(charge.pk) in billed:
            continue
        assert charge.feature_pk is not None
        quantity = await usage_quantity(ctx, customer.pk, charge.feature_pk, start, end)
        if quantity == 0:
            continue
        feature = await ctx.session.get_one(Feature, charge.feature_pk)
        price_id = await ctx.session.scalar(
            select(StripeObject.stripe_id).where(
                StripeObject.environment_pk == ctx.environment.pk,
                StripeObject.entity_type == "plan",
                StripeObject.entity_pk == sub.plan_pk,
                StripeObject.role == m.price_role(charge),
            )
        )
        params: dict[str, Any] = {
            "customer": customer.billing_id,
            **({} if late else {"invoice": invoice_id}),
            "quantity": quantity,
            "description": f"{feature.name}: {quantity} {feature.unit_plural or 'units'} "
            f"({start.date().isoformat()} to {end.date().isoformat()})",
            "period": {"start": int(start.timestamp()), "end": int(end.timestamp())},
            "metadata": {
                "tollgateChargeId": str(charge.pk),
                "tollgateSubscriptionId": sub.ref,
                "tollgateInvoiceId": invoice_id,
            },
        }
        if price_id:
            params["pricing"] = {"price": price_id}
        else:
            params["amount"] = quantity * (charge.amount or 0)
            params["currency"] = charge.currency.lower()
        await ctx.client.v1.invoice_items.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"tg-{ctx.environment.pk}-usage-{invoice_id}-{charge.pk}"},
        )
