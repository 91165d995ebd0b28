"""Provisioning with billing: the domain decides, Checkout collects the payment it requires."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.checkout import active_integration, open_checkout
from app.billing.integration import IntegrationService
from app.billing.payment_gate import CheckoutPaymentGate
from app.billing.schemas import BillingProvisionResult, ProvisionWithCheckout
from app.catalog.models import PricingType
from app.core.errors import InvalidRequest
from app.customers.models import Customer
from app.db import utcnow
from app.environments.service import EnvironmentRef
from app.settings import Settings
from app.subscriptions import service as subscriptions
from app.subscriptions.models import Subscription, SubscriptionStatus
from app.subscriptions.schemas import PreviewResult, ProvisionRequest


async def provision_with_billing(
    session: AsyncSession,
    settings: Settings,
    env: EnvironmentRef,
    request: ProvisionWithCheckout,
    *,
    now: dt.datetime | None = None,
) -> BillingProvisionResult:
    """`POST /subscriptions`. Without an ACTIVE Stripe integration this is plain provisioning.

    With one, a paid subscription for a customer with no payment method starts
    PAYMENT_PENDING and the answer is PAYMENT_REQUIRED with a Checkout URL. A trial starts at
    once (as the domain decides); when checkoutOptions are sent, the answer also carries a
    Checkout URL that collects the card for the end of the trial.
    """
    now = now or utcnow()
    integration = await active_integration(session, env.pk)
    gate = CheckoutPaymentGate(request.checkout_options is not None) if integration is not None else None
    result = await subscriptions.provision_subscription(session, env.pk, request, now=now, payment_gate=gate)
    plain = BillingProvisionResult(status=result.status, subscription=result.subscription)
    if integration is None:
        return plain
    sub = await session.scalar(
        select(Subscription).where(
            Subscription.environment_pk == env.pk, Subscription.ref == result.subscription.id
        )
    )
    assert sub is not None
    customer = await session.get_one(Customer, sub.customer_pk)
    pending = sub.status == SubscriptionStatus.PAYMENT_PENDING
    trial_needs_card = (
        sub.status == SubscriptionStatus.IN_TRIAL
        and sub.billing_id is None
        and not customer.has_payment_method
        and request.checkout_options is not None
    )
    if not (pending or trial_needs_card):
        return plain
    options = request.checkout_options
    if options is None:
        raise InvalidRequest(
            "This subscription waits for payment: send checkoutOptions (successUrl, cancelUrl).",
            code="checkout_options_required",
            param="checkoutOptions",
        )
    config = gate.config if gate is not None and gate.config is not None else None
    if config is None:
        # A change of a waiting subscription, or a trial: Checkout sells what was asked for.
        config = await subscriptions.build_config(
            session,
            env.pk,
            customer,
            plan_ref=request.plan_id,
            billing_period=request.billing_period,
            addons=request.addons,
            unit_quantities=request.unit_quantities,
            coupon_ref=request.coupon_id,
        )
    if config.plan.pricing_type != PricingType.PAID:
        return plain
    service = IntegrationService(session, settings)
    checkout = await open_checkout(
        session,
        service.client(integration),
        integration,
        public_url=settings.public_url,
        environment_slug=env.slug,
        sub=sub,
        customer=customer,
        config=config,
        options=options,
        now=now,
    )
    return BillingProvisionResult(
        status="PAYMENT_REQUIRED" if pending else result.status,
        subscription=result.subscription,
        checkout_url=checkout.url,
    )


async def preview_with_billing(
    session: AsyncSession,
    environment_pk: int,
    request: ProvisionRequest,
    *,
    offers_checkout: bool,
    now: dt.datetime | None = None,
) -> PreviewResult:
    """What `provision_with_billing` would do with the same choice of Checkout, priced: an
    upgrade that must be paid first is previewed as the new subscription Checkout will sell."""
    integration = await active_integration(session, environment_pk)
    gate = CheckoutPaymentGate(offers_checkout) if integration is not None else None
    return await subscriptions.preview_subscription(
        session, environment_pk, request, now=now, payment_gate=gate
    )
