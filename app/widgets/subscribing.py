"""The widgets' one door into the subscriptions service.

Every change a widget makes goes through `provision`, `cancel`, `cancel_scheduled` and
`preview` here, so the checkout work has a single place to plug in: when provisioning answers
PAYMENT_REQUIRED with a Checkout URL, the widget sends the host page there (`tollgate:navigate`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import TollgateError, not_found
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


def _checkout_url(source: Any) -> str | None:
    """The checkout work answers PAYMENT_REQUIRED with a URL, on the result or on the error."""
    url = getattr(source, "checkout_url", None)
    if url is None and isinstance(source, TollgateError):
        url = source.extra.get("checkoutUrl")
    return url if isinstance(url, str) and url else None


async def provision(session: AsyncSession, environment_pk: int, request: ProvisionRequest) -> Outcome:
    # TODO(checkout merge): call the checkout-aware provisioning (payment gate + Checkout
    # session) here once `checkout` is merged; both result shapes are already understood.
    try:
        result = await service.provision_subscription(session, environment_pk, request)
    except TollgateError as exc:
        url = _checkout_url(exc)
        if url is None:
            raise
        return Outcome(None, "PAYMENT_REQUIRED", url)
    url = _checkout_url(result)
    if url is not None:
        return Outcome(result.subscription, "PAYMENT_REQUIRED", url)
    return Outcome(result.subscription, result.status)


async def preview(
    session: AsyncSession, environment_pk: int, request: ProvisionRequest, now: dt.datetime | None = None
) -> PreviewResult:
    return await service.preview_subscription(session, environment_pk, request, now=now)


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
