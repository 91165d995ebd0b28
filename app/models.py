"""Every ORM model, imported in one place so Alembic and tests see the whole schema."""

from app.admin.models import LoginFailure, Operator
from app.billing.models import ReconcileRun, StripeIntegration, StripeObject, SyncState, WebhookEvent
from app.catalog.models import Addon, Charge, Coupon, Entitlement, Feature, Plan, PriceVersion, Product
from app.core.coordination import Lease, RateBucket
from app.core.outbox import OutboxEvent
from app.customers.models import Customer
from app.db import Base
from app.environments.models import Environment
from app.subscriptions.models import Subscription, SubscriptionAddon, UsageCounter, UsageEvent

__all__ = [
    "Addon",
    "Base",
    "Charge",
    "Coupon",
    "Customer",
    "Entitlement",
    "Environment",
    "Feature",
    "Lease",
    "LoginFailure",
    "Operator",
    "OutboxEvent",
    "Plan",
    "PriceVersion",
    "Product",
    "RateBucket",
    "ReconcileRun",
    "StripeIntegration",
    "StripeObject",
    "Subscription",
    "SubscriptionAddon",
    "SyncState",
    "UsageCounter",
    "UsageEvent",
    "WebhookEvent",
]
