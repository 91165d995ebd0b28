"""Billing Portal hand-off: Stripe's page for invoices, card and billing address.

Tollgate owns the subscription (plans, quantities, cancellation) and the customer's name and
email, so the portal configuration Tollgate keeps in the account turns those off.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.checkout import active_integration, stripe_unavailable
from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration
from app.billing.schemas import PortalOut, PortalRequest
from app.core.errors import NotFound, Unprocessable
from app.customers.service import get_customer_row
from app.environments.service import EnvironmentRef
from app.settings import Settings

logger = logging.getLogger("tollgate.billing.portal")

PORTAL_FEATURES: dict[str, Any] = {
    "invoice_history": {"enabled": True},
    # Address for Stripe Tax and invoices; phone and tax id optional. Name and email are ours.
    "customer_update": {"enabled": True, "allowed_updates": ["address", "phone", "tax_id"]},
    "payment_method_update": {"enabled": True},
    "subscription_cancel": {"enabled": False},
    "subscription_update": {"enabled": False},
    "subscription_pause": {"enabled": False},
}


def _matches(config: stripe.billing_portal.Configuration) -> bool:
    features = config.features
    return bool(
        config.active
        and features.invoice_history.enabled
        and features.customer_update.enabled
        and sorted(features.customer_update.allowed_updates) == ["address", "phone", "tax_id"]
        and features.payment_method_update.enabled
        and not features.subscription_cancel.enabled
        and not features.subscription_update.enabled
    )


async def ensure_portal_configuration(client: stripe.StripeClient, integration: StripeIntegration) -> str:
    """Our configuration's id: created once, put back to our settings if someone changed it."""
    configs = client.v1.billing_portal.configurations
    if integration.portal_configuration_id:
        try:
            current = await configs.retrieve_async(integration.portal_configuration_id)
        except stripe.InvalidRequestError:
            current = None  # gone (another account, or a reset sandbox): make a new one
        if current is not None:
            if not _matches(current):
                await configs.update_async(
                    current.id, params=cast(Any, {"active": True, "features": PORTAL_FEATURES})
                )
            return current.id
    created = await configs.create_async(
        params=cast(
            Any,
            {
                "features": PORTAL_FEATURES,
                "metadata": {"tollgateIntegrationId": integration.ref},
            },
        ),
        options={"idempotency_key": f"tollgate-{integration.ref}-portal-configuration-v1"},
    )
    integration.portal_configuration_id = created.id
    return created.id


async def create_portal_session(
    session: AsyncSession, settings: Settings, env: EnvironmentRef, customer_ref: str, data: PortalRequest
) -> PortalOut:
    customer = await get_customer_row(session, env, customer_ref)
    integration = await active_integration(session, env.pk)
    if integration is None:
        raise NotFound("This environment is not connected to Stripe.", code="integration_not_found")
    if not customer.billing_id:
        raise Unprocessable(
            f"Customer '{customer_ref}' has never been billed in Stripe, so there is no billing portal "
            "to show yet (it exists once the customer has paid or subscribed to a paid plan).",
            code="customer_not_billed",
        )
    client = IntegrationService(session, settings).client(integration)
    try:
        configuration = await ensure_portal_configuration(client, integration)
        portal = await client.v1.billing_portal.sessions.create_async(
            params={
                "customer": customer.billing_id,
                "return_url": data.return_url,
                "configuration": configuration,
            }
        )
    except stripe.InvalidRequestError as error:
        if error.param == "customer" or (error.code == "resource_missing" and "customer" in str(error)):
            raise Unprocessable(
                f"Customer '{customer_ref}' no longer exists in Stripe ({customer.billing_id}).",
                code="customer_not_billed",
            ) from None
        raise stripe_unavailable(error, "open the billing portal") from None
    except stripe.StripeError as error:
        raise stripe_unavailable(error, "open the billing portal") from None
    await session.flush()
    return PortalOut(url=portal.url)
