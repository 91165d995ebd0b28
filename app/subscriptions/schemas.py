"""Request and response bodies of the subscriptions, entitlements and usage API (camelCase)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from app.catalog.models import BillingPeriod
from app.subscriptions.models import SubscriptionStatus, UsageUpdateBehavior

MAX_USAGE_BATCH = 1000

# Bounds that keep values inside BIGINT and dates inside datetime's range: a wild number is
# a 400 from validation, never a database error.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
UsageValue = Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)]
Quantity = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31)]


class Camel(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    pass


# --- entitlements -------------------------------------------------------------------------


class EntitlementCheck(Camel):
    feature_id: str
    feature_type: str
    has_access: bool
    access_denied_reason: str | None = None
    is_unlimited: bool = False
    usage_limit: int | None = None
    current_usage: int | None = None
    requested_usage: int | None = None
    has_soft_limit: bool = False
    soft_limit_exceeded: bool = False
    reset_period: str | None = None
    usage_period_start: dt.datetime | None = None
    usage_period_end: dt.datetime | None = None


class EntitlementList(Camel):
    customer_id: str
    data: list[EntitlementCheck]


# --- usage --------------------------------------------------------------------------------


class UsageReport(Camel):
    customer_id: Id
    feature_id: Id
    value: UsageValue
    idempotency_key: str
    update_behavior: UsageUpdateBehavior = UsageUpdateBehavior.DELTA
    timestamp: dt.datetime | None = None


class ReportUsageRequest(Camel):
    usages: list[UsageReport]


class UsageOutcome(Camel):
    idempotency_key: str
    customer_id: str
    feature_id: str
    # False when the idempotency key was seen before: the report changed nothing.
    applied: bool


class ReportUsageResult(Camel):
    accepted: int
    duplicates: int
    data: list[UsageOutcome]


# --- subscriptions ------------------------------------------------------------------------


class AddonInput(Camel):
    addon_id: Id
    quantity: Quantity = 1


class UnitQuantityInput(Camel):
    feature_id: Id
    quantity: Quantity


class TrialOverride(Camel):
    duration_days: Annotated[int, msgspec.Meta(ge=0, le=3650)] | None = None
    disabled: bool = False


class ProvisionRequest(Camel):
    customer_id: Id
    plan_id: Id
    billing_period: BillingPeriod = BillingPeriod.MONTHLY
    addons: list[AddonInput] = msgspec.field(default_factory=list)
    unit_quantities: list[UnitQuantityInput] = msgspec.field(default_factory=list)
    coupon_id: str | None = None
    trial_override: TrialOverride | None = None
    subscription_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    metadata: dict[str, Any] | None = None


class UpdateRequest(Camel):
    """Omitted fields keep their value; `couponId: null` removes the coupon."""

    plan_id: str | msgspec.UnsetType = msgspec.UNSET
    billing_period: BillingPeriod | msgspec.UnsetType = msgspec.UNSET
    addons: list[AddonInput] | msgspec.UnsetType = msgspec.UNSET
    unit_quantities: list[UnitQuantityInput] | msgspec.UnsetType = msgspec.UNSET
    coupon_id: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class CancelRequest(Camel):
    cancellation_time: Literal["IMMEDIATE", "END_OF_BILLING_PERIOD"] = "END_OF_BILLING_PERIOD"


class AddonOut(Camel):
    addon_id: str
    quantity: int


class UnitQuantityOut(Camel):
    feature_id: str
    quantity: int


class ScheduledChangeOut(Camel):
    scheduled_at: dt.datetime
    plan_id: str
    billing_period: BillingPeriod
    addons: list[AddonOut]
    unit_quantities: list[UnitQuantityOut]


class SubscriptionOut(Camel):
    id: str
    customer_id: str
    product_id: str
    plan_id: str
    billing_period: BillingPeriod
    status: SubscriptionStatus
    start_date: dt.datetime
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    trial_end: dt.datetime | None
    cancel_at: dt.datetime | None
    canceled_at: dt.datetime | None
    ended_at: dt.datetime | None
    activated_at: dt.datetime | None
    coupon_id: str | None
    addons: list[AddonOut]
    unit_quantities: list[UnitQuantityOut]
    scheduled_change: ScheduledChangeOut | None
    metadata: dict[str, Any]
    created_at: dt.datetime


class ProvisionResult(Camel):
    # SUCCESS: in effect now. SCHEDULED: a downgrade / billing-period change stored for the period end.
    status: Literal["SUCCESS", "SCHEDULED"]
    subscription: SubscriptionOut


# --- preview ------------------------------------------------------------------------------


class LineItem(Camel):
    kind: Literal["PLAN", "ADDON", "PRORATION_CREDIT", "PRORATION_CHARGE", "DISCOUNT"]
    description: str
    amount: int
    quantity: int = 1
    unit_amount: int | None = None
    billing_model: str | None = None
    feature_id: str | None = None
    # USAGE_BASED charges are billed in arrears: amount 0 now, unit price shown.
    in_arrears: bool = False


class PreviewResult(Camel):
    change_type: Literal["NEW", "UPGRADE", "DOWNGRADE", "BILLING_PERIOD_CHANGE", "NO_CHANGE"]
    currency: str | None
    billing_period: BillingPeriod
    effective_at: dt.datetime
    # Negative = a credit owed to the customer (unused time of a dearer configuration).
    amount_due_now: int
    next_recurring_total: int
    next_billing_date: dt.datetime | None
    lines_due_now: list[LineItem]
    recurring_lines: list[LineItem]
    trial_end: dt.datetime | None = None
    # An upgrade from a plan nobody pays for that waits for payment: a new subscription from now.
    payment_first: bool = False
