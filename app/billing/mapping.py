"""Our entities -> the Stripe objects they should be: names, prices, metadata, eligibility.

Pure functions of rows already loaded: no I/O here, so the sync engine, reconcile and the
tests agree on one definition of "desired".

Who is synced (and why not, when not):

- Plan / add-on: PUBLISHED or ARCHIVED ones with PAID pricing. A DRAFT is `draft`; FREE and
  CUSTOM plans are `free_plan` / `custom_plan` (Stripe has nothing to bill).
- Coupon: always (archiving deletes it in Stripe; discounts already applied there stay).
- Customer: once it has a live subscription Stripe must bill: a PAID plan that is ACTIVE,
  PAYMENT_PENDING, or IN_TRIAL converting to paid. Otherwise `no_subscription`,
  `free_plans_only`, `custom_plans_only` or `trials_only`; `customer_sync_disabled` while the
  environment turns customer syncing off. Missing billing information or payment method does
  NOT block: Stripe then invoices by e-mail (collection_method=send_invoice) until a payment
  method exists. A customer synced once stays synced (name and e-mail keep flowing).
- Subscription: PAID plan, not a trial that cancels at its end, not NOT_STARTED; otherwise
  `free_plan`, `custom_plan`, `trial`, `not_started`; `subscription_sync_disabled` while off.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from app.catalog.models import (
    Addon,
    BillingModel,
    BillingPeriod,
    Charge,
    Coupon,
    DiscountDuration,
    Feature,
    Plan,
    PlanStatus,
    PricingType,
    TiersMode,
    TrialEndBehavior,
)
from app.core.links import CONSOLE_SECTIONS, entity_url
from app.customers.models import Customer
from app.subscriptions.models import Subscription, SubscriptionStatus

S = SubscriptionStatus

# Stripe refuses more than 500 active subscriptions per customer; tests lower this.
MAX_SUBSCRIPTIONS_PER_CUSTOMER = 500

ADMIN_PATHS = {t: CONSOLE_SECTIONS[t] for t in ("plan", "addon", "coupon", "customer", "subscription")}

REASONS = {
    "draft": "Draft plans and add-ons reach Stripe when they are published.",
    "free_plan": "Free plans have nothing for Stripe to bill.",
    "custom_plan": "Custom-price plans are billed outside Stripe.",
    "trial": "A trial that ends without converting to paid has nothing for Stripe to bill.",
    "not_started": "The subscription has not started yet.",
    "ended": "The subscription ended before it ever reached Stripe.",
    "no_subscription": "The customer has no subscription that Stripe must bill.",
    "free_plans_only": "The customer only has free plans.",
    "custom_plans_only": "The customer only has custom-price plans.",
    "trials_only": "The customer only has trials that do not convert to paid.",
    "customer_sync_disabled": "Customer syncing is turned off for this environment.",
    "subscription_sync_disabled": "Subscription syncing is turned off for this environment.",
    "customer_not_synced": "The subscription waits for its customer, which is not synced.",
    "awaiting_checkout": "The subscription waits for payment on a Checkout page, which creates it in Stripe.",
    "customer_failed": "Its customer could not be synced; retry the customer.",
    "subscription_limit": "Stripe allows at most 500 active subscriptions per customer.",
    "no_integration": "This environment is not connected to Stripe.",
}

LIVE = (S.ACTIVE, S.PAYMENT_PENDING, S.IN_TRIAL)


@dataclass(frozen=True)
class EnvInfo:
    pk: int
    slug: str
    public_url: str
    # The integration's public id: scopes our deterministic Stripe ids (products, coupons).
    integration_ref: str = ""


def metadata(env: EnvInfo, entity_type: str, entity_id: str) -> dict[str, str]:
    return {
        "tollgateEntityId": entity_id,
        "tollgateEnvironment": env.slug,
        "tollgateEntityUrl": entity_url(env.public_url, entity_type, entity_id, env.slug),
    }


def fingerprint(params: Any) -> str:
    """A short stable hash of request parameters: idempotency keys encode the exact desired state."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:20]


def idempotency_key(env_pk: int, entity_type: str, entity_pk: int, action: str, params: Any) -> str:
    # The "tg-" prefix lets the webhook processor recognise echoes of our own writes.
    return f"tg-{env_pk}-{entity_type}-{entity_pk}-{action}-{fingerprint(params)}"


# -- catalog ----------------------------------------------------------------------------------
def catalog_reason(owner: Plan | Addon) -> str | None:
    if owner.status is PlanStatus.DRAFT:
        return "draft"
    if owner.pricing_type is PricingType.FREE:
        return "free_plan"
    if owner.pricing_type is PricingType.CUSTOM:
        return "custom_plan"
    return None


def product_name(product_name: str, owner: Plan | Addon) -> str:
    suffix = "Plan" if isinstance(owner, Plan) else "Add-on"
    return f"{product_name} {owner.name} {suffix}"


def product_id(env: EnvInfo, kind: str, owner_pk: int, feature_pk: int | None = None) -> str:
    """Deterministic product ids: a retried create can never make a second product."""
    base = f"tg_{env.integration_ref}_{kind}_{owner_pk}"
    return base if feature_pk is None else f"{base}_f{feature_pk}"


def catalog_active(owner: Plan | Addon) -> bool:
    """Whether a plan's or add-on's Stripe products (and its current prices) are active."""
    return owner.status is not PlanStatus.ARCHIVED and catalog_reason(owner) is None


def catalog_products(
    env: EnvInfo,
    kind: str,
    owner: Plan | Addon,
    product_name_: str,
    charges: list[Charge],
    features: dict[int, Feature],
) -> dict[str, dict[str, Any]]:
    """{role: Stripe product parameters} of a plan or add-on: its own product (flat fees), and
    one product per feature of its other charges."""
    md = metadata(env, kind, owner.ref)
    active = catalog_active(owner)
    name = product_name(product_name_, owner)
    own: dict[str, Any] = {
        "id": product_id(env, kind, owner.pk),
        "name": name,
        "active": active,
        "metadata": md,
    }
    if owner.description:
        own["description"] = owner.description
    wanted = {"product": own}
    for charge in charges:
        role = charge_product_role(charge)
        if role != "product" and role not in wanted:
            feature = features.get(charge.feature_pk or 0)
            wanted[role] = {
                "id": product_id(env, kind, owner.pk, charge.feature_pk),
                "name": f"{name} - {feature.name if feature else charge.billing_model.value.title()}",
                "active": active,
                "metadata": {**md, "tollgateFeatureId": feature.ref if feature else ""},
            }
    return wanted


def charge_product_role(charge: Charge) -> str:
    # Flat fees bill under the plan's own product; every other charge gets its own product,
    # one per feature, stable across price versions.
    return (
        "product" if charge.billing_model is BillingModel.FLAT_FEE else f"product:feature:{charge.feature_pk}"
    )


def price_role(charge: Charge) -> str:
    return f"price:{charge.price_version_pk}:{charge.pk}"


def price_params(charge: Charge, product: str, md: dict[str, str]) -> dict[str, Any]:
    interval = "month" if charge.billing_period is BillingPeriod.MONTHLY else "year"
    params: dict[str, Any] = {
        "currency": charge.currency.lower(),
        "product": product,
        # Tollgate shows prices before tax; Stripe Tax (Checkout, invoices) adds it on top.
        "tax_behavior": "exclusive",
        "metadata": {**md, "tollgateChargeId": str(charge.pk)},
    }
    if charge.billing_model is BillingModel.USAGE_BASED:
        # Usage is added to the renewal invoice as invoice items priced with this one-off price.
        params["unit_amount"] = charge.amount or 0
        return params
    params["recurring"] = {"interval": interval}
    if charge.billing_model is BillingModel.TIERED:
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = "graduated" if charge.tiers_mode is TiersMode.GRADUATED else "volume"
        params["tiers"] = [
            {
                "up_to": tier.get("upTo") if tier.get("upTo") is not None else "inf",
                "unit_amount": tier.get("unitAmount", 0),
                "flat_amount": tier.get("flatAmount", 0),
            }
            for tier in charge.tiers or []
        ]
    else:
        params["unit_amount"] = charge.amount or 0
    return params


def coupon_params(env: EnvInfo, coupon: Coupon) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": f"tg_{env.integration_ref}_coupon_{coupon.pk}",
        "name": coupon.name,
        "duration": coupon.duration.value.lower(),
        "metadata": metadata(env, "coupon", coupon.ref),
    }
    if coupon.percent_off_bp is not None:
        params["percent_off"] = coupon.percent_off_bp / 100
    else:
        params["amount_off"] = coupon.amount_off
        params["currency"] = (coupon.currency or "usd").lower()
    if coupon.duration is DiscountDuration.REPEATING:
        params["duration_in_months"] = coupon.duration_in_months
    return params


# -- customers and subscriptions --------------------------------------------------------------
def billable(sub: Subscription, plan: Plan) -> str | None:
    """None when Stripe must bill this subscription, else the NOT_SYNCED reason."""
    if plan.pricing_type is PricingType.FREE:
        return "free_plan"
    if plan.pricing_type is PricingType.CUSTOM:
        return "custom_plan"
    if sub.status is S.NOT_STARTED:
        return "not_started"
    if sub.status is S.IN_TRIAL and plan.trial_end_behavior is TrialEndBehavior.CANCEL_SUBSCRIPTION:
        return "trial"
    return None


def customer_reason(subs: list[tuple[Subscription, Plan]]) -> str | None:
    """None when the customer must be in Stripe, else why not."""
    live = [(s, p) for s, p in subs if s.status in LIVE]
    if not live:
        return "no_subscription"
    reasons = [billable(s, p) for s, p in live]
    if any(r is None for r in reasons):
        return None
    if all(r == "free_plan" for r in reasons):
        return "free_plans_only"
    if all(r == "custom_plan" for r in reasons):
        return "custom_plans_only"
    if all(r == "trial" for r in reasons):
        return "trials_only"
    return "no_subscription"


def customer_params(env: EnvInfo, customer: Customer) -> dict[str, Any]:
    info = customer.billing_info or {}
    params: dict[str, Any] = {
        "name": info.get("invoiceName") or customer.name or customer.ref,
        "metadata": metadata(env, "customer", customer.ref),
    }
    if customer.email:
        params["email"] = customer.email
    if customer.name and info.get("invoiceName") and info["invoiceName"] != customer.name:
        # Stripe prints `name` on invoices; keep the display name visible beside it.
        params["description"] = customer.name
    address = info.get("address")
    if isinstance(address, dict) and address:
        params["address"] = {
            k: v
            for k, v in {
                "line1": address.get("line1"),
                "line2": address.get("line2"),
                "city": address.get("city"),
                "state": address.get("state"),
                "postal_code": address.get("postalCode"),
                "country": address.get("country"),
            }.items()
            if v
        }
    if info.get("phone"):
        params["phone"] = info["phone"]
    return params


def metadata_of(obj: Any) -> dict[str, str]:
    md = getattr(obj, "metadata", None)
    if md is None:
        return {}
    return md.to_dict() if hasattr(md, "to_dict") else dict(md)


def customer_differs(desired: dict[str, Any], current: Any) -> dict[str, Any]:
    """The fields of `desired` that Stripe's customer does not have yet."""
    changes: dict[str, Any] = {}
    for field in ("name", "email", "description", "phone"):
        if field in desired and getattr(current, field, None) != desired[field]:
            changes[field] = desired[field]
    current_md = metadata_of(current)
    if any(current_md.get(k) != v for k, v in desired["metadata"].items()):
        changes["metadata"] = desired["metadata"]
    if "address" in desired:
        have = current.address
        have_dict = {k: getattr(have, k, None) for k in desired["address"]} if have else {}
        if have_dict != desired["address"]:
            changes["address"] = desired["address"]
    return changes
