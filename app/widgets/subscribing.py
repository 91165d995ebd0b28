"""The widgets' one door into the subscriptions service.

Every change a widget makes goes through `provision`, `cancel`, `cancel_scheduled` and
`preview` here. Provisioning goes through the billing layer (payment gate + Checkout): when it
answers with a Checkout URL, the widget sends the whole host page there (`tollgate:navigate`),
and Checkout sends the customer back to that page, marked with `tollgate_checkout=...`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.checkout import append_query
from app.billing.provisioning import preview_with_billing, provision_with_billing
from app.billing.schemas import CheckoutOptions, ProvisionWithCheckout
from app.catalog.models import BillingPeriod, Charge, Plan
from app.core.errors import not_found
from app.environments.service import EnvironmentRef
from app.settings import Settings
from app.subscriptions import service
from app.subscriptions.models import Subscription
from app.subscriptions.schemas import (
    CancelRequest,
    PreviewResult,
    ProvisionRequest,
    SubscriptionOut,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a provisioning request led to: a subscription now (or scheduled), or a payment page."""

    subscription: SubscriptionOut | None
    status: str  # SUCCESS | SCHEDULED | PAYMENT_REQUIRED
    checkout_url: str | None = None


RETURN_PATH = "/widgets/returned"
MARKER = "tollgate_checkout"  # tollgate.js recognises the page Checkout sent the customer back to


def checkout_options(settings: Settings, host_url: str | None) -> CheckoutOptions:
    """Back to the embedding page, marked; without one, to Tollgate's own return page."""
    base = host_url or f"{settings.public_url}{RETURN_PATH}"
    return CheckoutOptions(
        success_url=append_query(base, **{MARKER: "success"}),
        cancel_url=append_query(base, **{MARKER: "cancel"}),
    )


async def provision(
    session: AsyncSession,
    settings: Settings,
    env: EnvironmentRef,
    request: ProvisionRequest,
    *,
    host_url: str | None,
    collect_payment: bool = True,
) -> Outcome:
    """Provision through the billing layer: with Stripe connected, a paid plan for a customer
    with no card on file waits for Checkout, and the answer is the page to send the host to.

    `collect_payment=False` (a trial starting now) asks for no Checkout: the card can wait.
    """
    fields = {name: getattr(request, name) for name in request.__struct_fields__}
    options = checkout_options(settings, host_url) if collect_payment else None
    result = await provision_with_billing(
        session, settings, env, ProvisionWithCheckout(**fields, checkout_options=options)
    )
    if result.checkout_url:
        return Outcome(result.subscription, "PAYMENT_REQUIRED", result.checkout_url)
    return Outcome(result.subscription, result.status)


async def preview(
    session: AsyncSession, environment_pk: int, request: ProvisionRequest, now: dt.datetime | None = None
) -> PreviewResult:
    # Widgets always offer Checkout (see `provision`): the preview prices what it will sell.
    return await preview_with_billing(session, environment_pk, request, offers_checkout=True, now=now)


async def change_types(
    session: AsyncSession,
    environment_pk: int,
    customer_ref: str,
    offers: Sequence[tuple[Plan, int | None, Sequence[Charge]]],
    period: BillingPeriod,
    now: dt.datetime,
) -> dict[int, str]:
    return dict(await service.change_types(session, environment_pk, customer_ref, offers, period, now=now))


async def current(session: AsyncSession, environment_pk: int, ref: str) -> SubscriptionOut:
    return await service.get_subscription(session, environment_pk, ref)


async def cancel(
    session: AsyncSession, environment_pk: int, ref: str, *, immediately: bool
) -> SubscriptionOut:
    when = "IMMEDIATE" if immediately else "END_OF_BILLING_PERIOD"
    return await service.cancel_subscription(
        session, environment_pk, ref, CancelRequest(cancellation_time=when)
    )


async def cancel_scheduled(session: AsyncSession, environment_pk: int, ref: str) -> SubscriptionOut:
    return await service.cancel_scheduled_change(session, environment_pk, ref)


async def owned_subscription(
    session: AsyncSession, environment_pk: int, customer_pk: int, ref: str | None
) -> str:
    """The ref, if that subscription is this customer's; another's is as unknown as a missing one."""
    if not ref:
        raise not_found("subscription", "")
    found = await session.scalar(
        select(Subscription.ref).where(
            Subscription.environment_pk == environment_pk,
            Subscription.customer_pk == customer_pk,
            Subscription.ref == ref,
        )
    )
    if found is None:
        raise not_found("subscription", ref)
    return found


def event(sub: SubscriptionOut) -> dict[str, str]:
    """The detail of `tollgate:subscription-changed`."""
    return {"subscriptionId": sub.id, "planId": sub.plan_id, "status": sub.status.value}
