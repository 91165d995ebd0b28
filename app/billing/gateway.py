"""The one place Tollgate builds Stripe clients: pinned API version, our own retries."""

from __future__ import annotations

import stripe
from stripe._base_address import BaseAddresses

from app.settings import Settings

# Pinned by the SDK we pin (stripe==16.1.0); webhook endpoints are created with it too.
STRIPE_API_VERSION: str = stripe.api_version


def stripe_client(api_key: str, api_base: str | None) -> stripe.StripeClient:
    """A client for one integration. `api_base` None means Stripe itself.

    The SDK's own retries are off: the sync worker retries with backoff, idempotency keys and
    a shared rate budget, and a user-facing call should fail fast and say so.
    """
    addresses: BaseAddresses | None = None
    if api_base:
        addresses = {"api": api_base, "connect": api_base, "files": api_base}
    return stripe.StripeClient(
        api_key,
        stripe_version=STRIPE_API_VERSION,
        base_addresses=addresses or {},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(timeout=20, allow_sync_methods=True),
    )


def api_base_for(settings: Settings, sandbox: bool) -> str | None:
    return settings.sandbox_api_base if sandbox else settings.stripe_api_base


def dashboard_url(
    settings: Settings, sandbox: bool, live: bool, stripe_id: str, kind: str | None = None
) -> str:
    """A link that opens the object in Stripe's dashboard (or the sandbox's own page).

    `kind` ("products", "coupons", ...) is the dashboard's section where the id does not say it:
    our deterministic product and coupon ids both read `tg_...`.
    """
    if sandbox:
        return f"{settings.sandbox_api_base}/dashboard/{stripe_id}"
    mode = "" if live else "test/"
    if stripe_id.startswith("acct_"):
        # Account-scoped dashboard address: opens that account even when the operator has several.
        return f"https://dashboard.stripe.com/{stripe_id}/{mode}dashboard"
    prefix = "https://dashboard.stripe.com/" + mode
    if kind:
        return f"{prefix}{kind}/{stripe_id}"
    kinds = {
        "cus_": "customers",
        "sub_": "subscriptions",
        "prod_": "products",
        "price_": "prices",
        "in_": "invoices",
        "we_": "webhooks",
        "evt_": "events",
    }
    for id_prefix, path in kinds.items():
        if stripe_id.startswith(id_prefix):
            return f"{prefix}{path}/{stripe_id}"
    return f"{prefix}coupons/{stripe_id}"
