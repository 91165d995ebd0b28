"""Hosted Checkout on demand: the Stripe objects a session needs, the session, and its outcome.

Card data never passes through Tollgate: the customer pays on Stripe's page, and we learn the
result from Stripe (the `checkout.session.*` events, the browser's return through our URL,
or the status endpoint), each time by re-fetching the session from Stripe.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import mapping as m
from app.billing.events import EventContext, NotOurs, handles
from app.billing.models import (
    CheckoutSession,
    CheckoutStatus,
    IntegrationStatus,
    StripeIntegration,
    StripeObject,
)
from app.billing.schemas import CheckoutOptions, CheckoutStatusOut
from app.billing.sync import StripeWriter
from app.billing.tax import checkout_tax_params
from app.catalog.models import Addon, BillingModel, Charge, Coupon, Feature, Plan, Product
from app.core.errors import NotFound, TollgateError, not_found
from app.customers.models import Customer
from app.db import Database, utcnow
from app.environments.service import EnvironmentRef
from app.settings import Settings
from app.subscriptions import service as subscriptions
from app.subscriptions.models import Subscription, SubscriptionStatus
from app.subscriptions.schemas import CancelRequest
from app.worker import Job

logger = logging.getLogger("tollgate.billing.checkout")

# Stripe refuses a Checkout `trial_end` less than 48 hours away; shorter trials go as days.
MIN_TRIAL_END_SECONDS = 48 * 3600


def stripe_unavailable(error: stripe.StripeError, what: str) -> TollgateError:
    return TollgateError(
        f"Stripe could not {what}: {error.user_message or type(error).__name__}. Try again.",
        code="stripe_unavailable",
        status_code=502,
    )


async def active_integration(session: AsyncSession, environment_pk: int) -> StripeIntegration | None:
    return await session.scalar(
        select(StripeIntegration).where(
            StripeIntegration.environment_pk == environment_pk,
            StripeIntegration.status == IntegrationStatus.ACTIVE,
        )
    )


# --- Stripe objects Checkout needs --------------------------------------------------------
# The same objects the sync makes (app.billing.sync.StripeWriter, mapping.py): same ids, names,
# metadata and idempotency keys, recorded in the same `StripeObject` rows, so whichever of
# Checkout and the sync worker gets there first, the other finds the object and moves on.


async def _find_or_create(
    session: AsyncSession,
    environment_pk: int,
    entity: tuple[str, int],
    role: str,
    create: Callable[[], Awaitable[str]],
) -> str:
    """The Stripe id mapped to (entity, role), creating the Stripe object on first use.

    `create` uses the sync's deterministic ids and idempotency keys: if two requests (or a
    request and the sync worker) race, both get the same Stripe object and the loser's insert
    is dropped by the unique constraint.
    """
    entity_type, entity_pk = entity
    query = select(StripeObject.stripe_id).where(
        StripeObject.environment_pk == environment_pk,
        StripeObject.entity_type == entity_type,
        StripeObject.entity_pk == entity_pk,
        StripeObject.role == role,
    )
    existing = await session.scalar(query)
    if existing is not None:
        return existing
    stripe_id = await create()
    try:
        async with session.begin_nested():
            session.add(
                StripeObject(
                    environment_pk=environment_pk,
                    entity_type=entity_type,
                    entity_pk=entity_pk,
                    role=role,
                    stripe_id=stripe_id,
                )
            )
    except IntegrityError:
        return (await session.scalar(query)) or stripe_id
    return stripe_id


def _idempotency(integration: StripeIntegration, *parts: object) -> dict[str, Any]:
    return {"idempotency_key": "tollgate-" + "-".join(str(p) for p in (integration.ref, *parts))}


def env_info(settings_public_url: str, environment_slug: str, integration: StripeIntegration) -> m.EnvInfo:
    return m.EnvInfo(
        pk=integration.environment_pk,
        slug=environment_slug,
        public_url=settings_public_url,
        integration_ref=integration.ref,
    )


async def ensure_prices_for(
    session: AsyncSession, writer: StripeWriter, config: subscriptions.Config
) -> list[dict[str, Any]]:
    """Checkout line items for a configuration, making its products and prices in Stripe first
    (as the sync would). Usage-based charges are left out: renewal invoices bill them."""
    env = writer.env
    lines: list[dict[str, Any]] = []

    async def add(
        kind: str, owner: Plan | Addon, charges: Sequence[Charge], qty: Callable[[Charge], int]
    ) -> None:
        charges = [c for c in charges if c.billing_model != BillingModel.USAGE_BASED]
        if not charges:
            return
        product = await session.get_one(Product, owner.product_pk)
        feature_pks = {c.feature_pk for c in charges if c.feature_pk}
        features = {
            f.pk: f for f in (await session.scalars(select(Feature).where(Feature.pk.in_(feature_pks)))).all()
        }
        wanted = m.catalog_products(env, kind, owner, product.name, list(charges), features)
        md = m.metadata(env, kind, owner.ref)
        for charge in charges:
            product_role = m.charge_product_role(charge)

            async def make_product(params: dict[str, Any] = wanted[product_role]) -> str:
                return (await writer.ensure_product(kind, owner.pk, 0, params, known=False))[0]

            product_id = await _find_or_create(session, env.pk, (kind, owner.pk), product_role, make_product)

            async def make_price(charge: Charge = charge, product_id: str = product_id) -> str:
                return (await writer.ensure_price(kind, owner.pk, charge, product_id, md, None))[0]

            price = await _find_or_create(session, env.pk, (kind, owner.pk), m.price_role(charge), make_price)
            lines.append({"price": price, "quantity": qty(charge)})

    def plan_quantity(charge: Charge) -> int:
        if charge.billing_model in (BillingModel.PER_UNIT, BillingModel.TIERED) and charge.feature_pk:
            return config.unit_quantities.get(config.feature_refs[charge.feature_pk], 1)
        return 1

    await add("plan", config.plan, config.charges, plan_quantity)
    for item in config.addons:
        await add("addon", item.addon, item.charges, lambda _c, q=item.quantity: q)
    return lines


async def ensure_coupon(session: AsyncSession, writer: StripeWriter, coupon: Coupon) -> str:
    params = m.coupon_params(writer.env, coupon)
    return await _find_or_create(
        session,
        coupon.environment_pk,
        ("coupon", coupon.pk),
        "coupon",
        lambda: writer.create_coupon(coupon.pk, params),
    )


async def ensure_customer(writer: StripeWriter, customer: Customer) -> str:
    """The customer's Stripe id, creating the Stripe customer once (never a second one).

    Callers hold the customer's row lock (provisioning takes it), and the idempotency key is
    the sync's (per customer and parameters), so concurrent requests and the sync worker
    converge on one Stripe customer.
    """
    if customer.billing_id:
        return customer.billing_id
    created = await writer.create_customer(customer.pk, m.customer_params(writer.env, customer))
    customer.billing_id = created
    return created


# --- the session --------------------------------------------------------------------------


def session_params(
    *,
    line_items: list[dict[str, Any]],
    customer_id: str,
    subscription_ref: str,
    customer_ref: str,
    environment_slug: str,
    success_url: str,
    cancel_url: str,
    options: CheckoutOptions,
    coupon_id: str | None,
    stripe_tax: bool,
    trial_end: dt.datetime | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Exactly what Tollgate asks Stripe for (pure, so tests can pin it)."""
    metadata = {
        "tollgateSubscriptionId": subscription_ref,
        "tollgateCustomerId": customer_ref,
        "tollgateEnvironment": environment_slug,
    }
    subscription_data: dict[str, Any] = {"metadata": dict(metadata)}
    if trial_end is not None:
        seconds = int((trial_end - now).total_seconds())
        if seconds >= MIN_TRIAL_END_SECONDS:
            subscription_data["trial_end"] = int(trial_end.timestamp())
        else:
            subscription_data["trial_period_days"] = max(1, math.ceil(seconds / 86400))
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": line_items,
        "customer": customer_id,
        "client_reference_id": subscription_ref,
        "metadata": metadata,
        "subscription_data": subscription_data,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "billing_address_collection": "required" if stripe_tax or options.collect_billing_address else "auto",
    }
    # Stripe takes a coupon or the promotion-code box, not both: a coupon given wins.
    if coupon_id is not None:
        params["discounts"] = [{"coupon": coupon_id}]
    elif options.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    params.update(checkout_tax_params(stripe_tax))
    return params


def append_query(url: str, **values: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(values.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


async def open_checkout(
    session: AsyncSession,
    client: stripe.StripeClient,
    integration: StripeIntegration,
    *,
    public_url: str,
    environment_slug: str,
    sub: Subscription,
    customer: Customer,
    config: subscriptions.Config,
    options: CheckoutOptions,
    now: dt.datetime,
) -> CheckoutSession:
    """Create a Checkout Session for `sub` (closing an older open one) and remember it."""
    try:
        writer = StripeWriter(client, env_info(public_url, environment_slug, integration))
        line_items = await ensure_prices_for(session, writer, config)
        coupon_id = await ensure_coupon(session, writer, config.coupon) if config.coupon else None
        customer_id = await ensure_customer(writer, customer)
        token = secrets.token_urlsafe(24)
        params = session_params(
            line_items=line_items,
            customer_id=customer_id,
            subscription_ref=sub.ref,
            customer_ref=customer.ref,
            environment_slug=environment_slug,
            success_url=f"{public_url}/checkout/return/{token}/success",
            cancel_url=f"{public_url}/checkout/return/{token}/cancel",
            options=options,
            coupon_id=coupon_id,
            stripe_tax=integration.stripe_tax,
            trial_end=sub.trial_end if sub.status == SubscriptionStatus.IN_TRIAL else None,
            now=now,
        )
        created = await client.v1.checkout.sessions.create_async(
            params=cast(Any, params), options=cast(Any, _idempotency(integration, "checkout", token))
        )
    except stripe.StripeError as error:
        raise stripe_unavailable(error, "open a Checkout page") from None
    for older in await session.scalars(
        select(CheckoutSession).where(
            CheckoutSession.subscription_pk == sub.pk, CheckoutSession.status == CheckoutStatus.OPEN
        )
    ):
        # One open payment page per subscription: the newest one replaces the others.
        older.status = CheckoutStatus.EXPIRED
        try:
            await client.v1.checkout.sessions.expire_async(older.stripe_id)
        except stripe.StripeError:
            logger.info("checkout session %s could not be expired (already closed?)", older.stripe_id)
    row = CheckoutSession(
        environment_pk=sub.environment_pk,
        subscription_pk=sub.pk,
        customer_pk=customer.pk,
        stripe_id=created.id,
        token=token,
        status=CheckoutStatus.OPEN,
        url=created.url,
        success_url=options.success_url,
        cancel_url=options.cancel_url,
        expires_at=dt.datetime.fromtimestamp(created.expires_at, dt.UTC),
    )
    session.add(row)
    await session.flush()
    return row


# --- the outcome --------------------------------------------------------------------------


def _id_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.id


async def apply_session(
    session: AsyncSession, row: CheckoutSession, checkout: stripe.checkout.Session, now: dt.datetime
) -> CheckoutSession:
    """Bring our side in line with the Checkout Session as Stripe reports it (idempotent).

    Locks are taken customer first (the order provisioning takes them in), then the
    checkout row is re-read under lock, so concurrent callers apply an outcome once.
    """
    settled = (checkout.status == "complete" and row.status == CheckoutStatus.COMPLETED) or (
        checkout.status == "expired" and row.status != CheckoutStatus.OPEN
    )
    if checkout.status not in ("complete", "expired") or settled:
        return row
    customer = await session.get_one(Customer, row.customer_pk, with_for_update=True, populate_existing=True)
    await session.refresh(row, with_for_update=True)
    if checkout.status == "complete" and row.status != CheckoutStatus.COMPLETED:
        sub = await session.get_one(
            Subscription, row.subscription_pk, with_for_update=True, populate_existing=True
        )
        row.status = CheckoutStatus.COMPLETED
        row.completed_at = now
        customer.billing_id = customer.billing_id or _id_of(checkout.customer)
        customer.has_payment_method = True
        sub.billing_id = sub.billing_id or _id_of(checkout.subscription)
        if sub.status == SubscriptionStatus.PAYMENT_PENDING:
            await subscriptions.activate_subscription(session, sub, now)
        elif sub.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.IN_TRIAL):
            # Paid after we gave up on it: the Stripe subscription needs a person's decision.
            logger.warning(
                "checkout %s completed for subscription %s which is %s", row.stripe_id, sub.ref, sub.status
            )
    elif checkout.status == "expired" and row.status == CheckoutStatus.OPEN:
        row.status = CheckoutStatus.EXPIRED
        await _give_up(session, row, now)
    await session.flush()
    return row


async def _give_up(session: AsyncSession, row: CheckoutSession, now: dt.datetime) -> None:
    """An abandoned payment page: a subscription still waiting for it is cancelled."""
    sub = await session.get_one(Subscription, row.subscription_pk)
    newer_open = await session.scalar(
        select(CheckoutSession.pk).where(
            CheckoutSession.subscription_pk == row.subscription_pk,
            CheckoutSession.status == CheckoutStatus.OPEN,
            CheckoutSession.pk != row.pk,
        )
    )
    if sub.status == SubscriptionStatus.PAYMENT_PENDING and newer_open is None:
        await subscriptions.cancel_subscription(
            session, sub.environment_pk, sub.ref, CancelRequest(cancellation_time="IMMEDIATE"), now=now
        )


async def refresh(
    session: AsyncSession,
    client: stripe.StripeClient | None,
    row: CheckoutSession,
    now: dt.datetime,
) -> CheckoutSession:
    """Re-fetch an open session from Stripe and apply it; past its expiry, close it.

    A page whose subscription ended meanwhile (cancelled while waiting) is closed too, so
    nobody pays for a subscription that no longer exists.
    """
    if row.status != CheckoutStatus.OPEN:
        return row
    sub_status = await session.scalar(
        select(Subscription.status).where(Subscription.pk == row.subscription_pk)
    )
    ended = sub_status in (SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED)
    if client is None:
        # Disconnected from Stripe: nothing can complete this page any more.
        if now >= row.expires_at or ended:
            row.status = CheckoutStatus.EXPIRED
            await _give_up(session, row, now)
        return row
    checkout = await client.v1.checkout.sessions.retrieve_async(row.stripe_id)
    if checkout.status == "open" and (now >= row.expires_at or ended):
        checkout = await client.v1.checkout.sessions.expire_async(row.stripe_id)
    return await apply_session(session, row, checkout, now)


async def _row_for_event(ctx: EventContext, event: dict[str, Any]) -> CheckoutSession | None:
    stripe_id = event["data"]["object"]["id"]
    return await ctx.session.scalar(
        select(CheckoutSession).where(
            CheckoutSession.environment_pk == ctx.environment.pk,
            CheckoutSession.stripe_id == stripe_id,
        )
    )


@handles("checkout.session.completed", "checkout.session.expired")
async def on_checkout_session(ctx: EventContext, event: dict[str, Any]) -> None:
    """Both events: re-fetch the session (the payload may be stale or out of order) and apply."""
    row = await _row_for_event(ctx, event)
    if row is None:
        raise NotOurs(event["data"]["object"]["id"])  # a session someone else opened in this account
    checkout = await ctx.client.v1.checkout.sessions.retrieve_async(row.stripe_id)
    await apply_session(ctx.session, row, checkout, utcnow())


# --- where the customer and the host's return page learn the outcome ------------------------


def _client_for(session: AsyncSession, settings: Settings, integration: StripeIntegration | None) -> Any:
    from app.billing.integration import IntegrationService

    return None if integration is None else IntegrationService(session, settings).client(integration)


async def checkout_status(
    session: AsyncSession,
    settings: Settings,
    env: EnvironmentRef,
    subscription_ref: str,
    *,
    now: dt.datetime | None = None,
) -> CheckoutStatusOut:
    """The newest Checkout of a subscription, brought up to date from Stripe while it is open."""
    now = now or utcnow()
    sub_pk = await session.scalar(
        select(Subscription.pk).where(
            Subscription.environment_pk == env.pk, Subscription.ref == subscription_ref
        )
    )
    if sub_pk is None:
        raise not_found("subscription", subscription_ref)
    row = await session.scalar(
        select(CheckoutSession)
        .where(CheckoutSession.subscription_pk == sub_pk)
        .order_by(CheckoutSession.pk.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"Subscription '{subscription_ref}' has no Checkout.", code="checkout_not_found")
    if row.status == CheckoutStatus.OPEN:
        client = _client_for(session, settings, await active_integration(session, env.pk))
        try:
            await refresh(session, client, row, now)
        except stripe.StripeError as error:
            # The page's answer can wait for the webhook; say what we know.
            logger.info("checkout %s not refreshed: %s", row.stripe_id, error)
    status = {"OPEN": "PENDING", "COMPLETED": "COMPLETED", "EXPIRED": "EXPIRED"}[row.status.value]
    return CheckoutStatusOut(
        status=cast(Any, status),
        subscription=await subscriptions.get_subscription(session, env.pk, subscription_ref, now=now),
        checkout_url=row.url if row.status == CheckoutStatus.OPEN else None,
        expires_at=row.expires_at,
    )


async def return_location(
    session: AsyncSession, settings: Settings, token: str, outcome: str, *, now: dt.datetime | None = None
) -> str | None:
    """Where the browser goes after Stripe's page: the caller's URL with the result appended.

    On success the session is re-fetched first, so the page the customer lands on already
    sees the subscription active (the webhook, arriving later, then changes nothing).
    """
    now = now or utcnow()
    row = await session.scalar(select(CheckoutSession).where(CheckoutSession.token == token))
    if row is None or outcome not in ("success", "cancel"):
        return None
    sub_ref = await session.scalar(select(Subscription.ref).where(Subscription.pk == row.subscription_pk))
    if outcome == "cancel":
        return append_query(row.cancel_url, checkoutCompleted="false", subscriptionId=str(sub_ref))
    integration = await active_integration(session, row.environment_pk)
    try:
        await refresh(session, _client_for(session, settings, integration), row, now)
    except stripe.StripeError as error:
        logger.info("checkout %s not refreshed on return: %s", row.stripe_id, error)
    completed = "true" if row.status == CheckoutStatus.COMPLETED else "false"
    return append_query(row.success_url, checkoutCompleted=completed, subscriptionId=str(sub_ref))


async def expire_stale_checkouts(database: Database, settings: Settings, now: dt.datetime) -> int:
    """Worker job (bind `settings`): close open Checkout pages past their expiry (whose event
    never came) or whose subscription was cancelled while it waited for payment."""
    async with database.session() as session:
        ended = select(Subscription.pk).where(
            Subscription.pk == CheckoutSession.subscription_pk,
            Subscription.status.in_((SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED)),
        )
        rows = list(
            await session.scalars(
                select(CheckoutSession)
                .where(
                    CheckoutSession.status == CheckoutStatus.OPEN,
                    (CheckoutSession.expires_at < now) | ended.exists(),
                )
                .order_by(CheckoutSession.pk)
                .limit(50)
            )
        )
        done = 0
        for row in rows:
            integration = await active_integration(session, row.environment_pk)
            try:
                await refresh(session, _client_for(session, settings, integration), row, now)
            except stripe.StripeError as error:
                logger.warning("checkout %s not expired: %s", row.stripe_id, error)
                continue
            done += 1
        return done


def checkout_jobs(settings: Settings) -> list[Job]:
    """For `app.worker.default_jobs`: the jobs this module needs (the lead wires them in)."""

    async def run(database: Database, now: dt.datetime) -> int:
        return await expire_stale_checkouts(database, settings, now)

    return [Job("checkout-expiry", run, every_seconds=60)]
