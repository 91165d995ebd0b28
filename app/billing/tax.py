"""Stripe Tax: whether the account can compute tax, and the options that turn it on.

Tollgate never computes tax itself. With the toggle on, Checkout collects the address and tax
id Stripe Tax needs, and the subscriptions Tollgate creates or changes ask Stripe for it.
"""

from __future__ import annotations

from typing import Any

import stripe

from app.core.errors import TollgateError, Unprocessable


async def ensure_stripe_tax_active(client: stripe.StripeClient) -> None:
    """Refuse (with Stripe's reason) to turn Stripe Tax on in an account where it is not set up."""
    try:
        tax_settings = await client.v1.tax.settings.retrieve_async()
    except stripe.PermissionError:
        raise Unprocessable(
            "The Stripe key cannot read the account's tax settings; grant it read access to Tax settings.",
            code="stripe_tax_not_active",
            param="stripeTax",
        ) from None
    except stripe.StripeError as error:
        raise TollgateError(
            f"Stripe could not be reached to check Stripe Tax: {error.user_message or type(error).__name__}. Try again.",
            code="stripe_unavailable",
            status_code=502,
        ) from None
    if tax_settings.status == "active":
        return
    missing: list[str] = []
    details = tax_settings.status_details
    if details is not None and details.pending is not None:
        missing = list(details.pending.missing_fields or [])
    reason = f" (missing: {', '.join(missing)})" if missing else ""
    raise Unprocessable(
        f"Stripe Tax is not set up in this Stripe account{reason}: finish its setup in the Stripe "
        "dashboard (Settings → Tax), then turn it on here.",
        code="stripe_tax_not_active",
        param="stripeTax",
        extra={"taxStatus": tax_settings.status, "missingFields": missing},
    )


def checkout_tax_params(enabled: bool) -> dict[str, Any]:
    """What a Checkout Session needs so Stripe Tax can compute and collect tax."""
    if not enabled:
        return {}
    return {
        "automatic_tax": {"enabled": True},
        "billing_address_collection": "required",
        "tax_id_collection": {"enabled": True},
        # Keep what the customer typed on the Stripe customer, where Stripe Tax reads it.
        "customer_update": {"address": "auto", "name": "auto"},
    }


def subscription_tax_params(enabled: bool) -> dict[str, Any]:
    """For every subscription create/update Tollgate sends (used by the sync)."""
    return {"automatic_tax": {"enabled": True}} if enabled else {}
