from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.billing.models import IntegrationStatus, StripeMode
from app.core.schemas import ApiStruct, OutStruct
from app.subscriptions.schemas import ProvisionRequest, SubscriptionOut

# Where a browser is sent back to: an absolute http(s) URL.
ReturnUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]
StripeKey = Annotated[str, msgspec.Meta(min_length=10, max_length=300, pattern=r"^[A-Za-z0-9_]+$")]


class IntegrationConnect(ApiStruct):
    mode: StripeMode
    api_key: StripeKey | None = None


class IntegrationUpdate(ApiStruct):
    sync_customers: bool | UnsetType = UNSET
    sync_subscriptions: bool | UnsetType = UNSET
    stripe_tax: bool | UnsetType = UNSET


class Permission(OutStruct):
    resource: str
    access: str  # "read" or "write"


class GracePeriodCheck(OutStruct):
    """Stripe's invoice finalization grace period: usage must be reported before invoices finalize."""

    status: Literal["OK", "TOO_SHORT", "UNKNOWN"]
    required_seconds: int
    current_seconds: int | None
    message: str
    settings_url: str


class IntegrationOut(OutStruct):
    integration_id: str
    mode: StripeMode
    status: IntegrationStatus
    account_id: str
    account_name: str | None
    api_key_hint: str
    webhook_endpoint_id: str | None
    sync_customers: bool
    sync_subscriptions: bool
    stripe_tax: bool
    invoice_grace_period_seconds: int | None
    grace_period_ok: bool | None
    grace_period_check: GracePeriodCheck
    portal_configuration_id: str | None
    dashboard_url: str
    created_at: dt.datetime
    updated_at: dt.datetime


class PermissionsOut(OutStruct):
    permissions: list[Permission]


class OAuthStartOut(OutStruct):
    url: str
    state: str
    expires_at: dt.datetime


# --- Checkout and Billing Portal ------------------------------------------------------------


class CheckoutOptions(ApiStruct):
    success_url: ReturnUrl
    cancel_url: ReturnUrl
    allow_promotion_codes: bool = False
    collect_billing_address: bool = False


class ProvisionWithCheckout(ProvisionRequest, kw_only=True):
    """POST /subscriptions: the domain's request plus where Checkout sends the customer back."""

    checkout_options: CheckoutOptions | None = None


class BillingProvisionResult(OutStruct):
    # PAYMENT_REQUIRED: the subscription waits (PAYMENT_PENDING) for the customer to pay at `checkoutUrl`.
    status: Literal["SUCCESS", "SCHEDULED", "PAYMENT_REQUIRED"]
    subscription: SubscriptionOut
    checkout_url: str | None = None


class CheckoutStatusOut(OutStruct):
    status: Literal["PENDING", "COMPLETED", "EXPIRED"]
    subscription: SubscriptionOut
    checkout_url: str | None
    expires_at: dt.datetime


class PortalRequest(ApiStruct):
    return_url: ReturnUrl


class PortalOut(OutStruct):
    url: str
