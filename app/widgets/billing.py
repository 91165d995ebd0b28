"""The widgets' door into the billing layer for what is not a subscription change: the
Billing Portal hand-off, and whether a customer has one to show.

Widgets and billing are both outer layers over the domain; the domain never sees either.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.checkout import active_integration
from app.billing.portal import create_portal_session
from app.billing.schemas import PortalRequest
from app.customers.models import Customer
from app.environments.service import EnvironmentRef
from app.settings import Settings


async def can_manage_billing(session: AsyncSession, environment_pk: int, customer_pk: int) -> bool:
    """A customer billed in Stripe (a Stripe customer exists), while Stripe is connected."""
    billing_id = await session.scalar(select(Customer.billing_id).where(Customer.pk == customer_pk))
    return bool(billing_id) and await active_integration(session, environment_pk) is not None


async def pays_at_checkout(session: AsyncSession, environment_pk: int, customer_ref: str) -> bool:
    """Whether a new paid subscription would wait for Stripe Checkout (no card on file)."""
    has_card = await session.scalar(
        select(Customer.has_payment_method).where(
            Customer.environment_pk == environment_pk, Customer.ref == customer_ref
        )
    )
    return not has_card and await active_integration(session, environment_pk) is not None


async def portal_url(
    session: AsyncSession, settings: Settings, env: EnvironmentRef, customer_ref: str, return_url: str
) -> str:
    """The same service as `POST /customers/{id}/billing-portal`, refusals included."""
    portal = await create_portal_session(session, settings, env, customer_ref, PortalRequest(return_url))
    return portal.url
