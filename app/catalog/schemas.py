"""Request and response Structs of the catalog (the API uses these directly)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from app.catalog.models import (
    BillingModel,
    BillingPeriod,
    CatalogStatus,
    DiscountDuration,
    FeatureType,
    MeterType,
    PlanStatus,
    PricingType,
    ResetPeriod,
    TiersMode,
    TrialEndBehavior,
)
from app.core.schemas import (
    ApiStruct,
    CurrencyCode,
    Description,
    Metadata,
    MinorUnits,
    Name,
    OutStruct,
    RefId,
)

# ---- features -------------------------------------------------------------------------


class FeatureCreate(ApiStruct):
    id: RefId
    name: Name
    feature_type: FeatureType
    description: Description | None = None
    meter_type: MeterType | None = None
    unit_singular: Name | None = None
    unit_plural: Name | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class FeatureUpdate(ApiStruct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    unit_singular: Name | UnsetType | None = UNSET
    unit_plural: Name | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET


class FeatureOut(OutStruct):
    id: str
    name: str
    description: str | None
    feature_type: FeatureType
    meter_type: MeterType | None
    unit_singular: str | None
    unit_plural: str | None
    status: CatalogStatus
    metadata: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


# ---- products -------------------------------------------------------------------------


class ProductCreate(ApiStruct):
    id: RefId
    name: Name
    description: Description | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class ProductUpdate(ApiStruct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET


class ProductOut(OutStruct):
    id: str
    name: str
    description: str | None
    status: CatalogStatus
    metadata: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


# ---- entitlements and charges -----------------------------------------------------------

UsageLimit = Annotated[int, msgspec.Meta(ge=0, le=10**15)]


class EntitlementIn(ApiStruct):
    feature_id: RefId
    usage_limit: UsageLimit | None = None
    unlimited: bool = False
    has_soft_limit: bool = False
    reset_period: ResetPeriod | None = None


class EntitlementOut(OutStruct):
    feature_id: str
    feature_name: str
    feature_type: FeatureType
    meter_type: MeterType | None
    unit_singular: str | None
    unit_plural: str | None
    usage_limit: int | None
    unlimited: bool
    has_soft_limit: bool
    reset_period: ResetPeriod | None


class TierIn(ApiStruct):
    up_to: Annotated[int, msgspec.Meta(ge=1)] | None
    unit_amount: MinorUnits = 0
    flat_amount: MinorUnits = 0


class ChargeIn(ApiStruct):
    billing_period: BillingPeriod
    currency: CurrencyCode
    billing_model: BillingModel
    amount: MinorUnits | None = None
    feature_id: RefId | None = None
    tiers_mode: TiersMode | None = None
    tiers: Annotated[list[TierIn], msgspec.Meta(max_length=50)] | None = None
    min_quantity: Annotated[int, msgspec.Meta(ge=0)] | None = None
    max_quantity: Annotated[int, msgspec.Meta(ge=1)] | None = None


class TierOut(OutStruct):
    up_to: int | None
    unit_amount: int
    flat_amount: int


class ChargeOut(OutStruct):
    billing_period: BillingPeriod
    currency: str
    billing_model: BillingModel
    amount: int | None
    feature_id: str | None
    tiers_mode: TiersMode | None
    tiers: list[TierOut] | None
    min_quantity: int | None
    max_quantity: int | None


class PriceVersionOut(OutStruct):
    version: int
    created_at: dt.datetime
    charges: list[ChargeOut]
    subscription_count: int | None = None


class DefaultTrial(ApiStruct):
    duration_days: Annotated[int, msgspec.Meta(ge=1, le=730)]
    trial_end_behavior: TrialEndBehavior = TrialEndBehavior.CONVERT_TO_PAID


class DefaultTrialOut(OutStruct):
    duration_days: int
    trial_end_behavior: TrialEndBehavior


# ---- plans -----------------------------------------------------------------------------

Entitlements = Annotated[list[EntitlementIn], msgspec.Meta(max_length=200)]
Charges = Annotated[list[ChargeIn], msgspec.Meta(max_length=50)]
RefList = Annotated[list[RefId], msgspec.Meta(max_length=200)]


class PlanCreate(ApiStruct):
    id: RefId
    product_id: RefId
    name: Name
    pricing_type: PricingType
    description: Description | None = None
    display_order: int = 0
    recommended: bool = False
    parent_plan_id: RefId | None = None
    default_trial: DefaultTrial | None = None
    entitlements: Entitlements = msgspec.field(default_factory=list)
    charges: Charges = msgspec.field(default_factory=list)
    compatible_addon_ids: RefList = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)


class PlanUpdate(ApiStruct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    pricing_type: PricingType | UnsetType = UNSET
    display_order: int | UnsetType = UNSET
    recommended: bool | UnsetType = UNSET
    parent_plan_id: RefId | UnsetType | None = UNSET
    default_trial: DefaultTrial | UnsetType | None = UNSET
    entitlements: Entitlements | UnsetType = UNSET
    charges: Charges | UnsetType = UNSET
    compatible_addon_ids: RefList | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


class PlanOut(OutStruct):
    id: str
    product_id: str
    name: str
    description: str | None
    pricing_type: PricingType
    status: PlanStatus
    display_order: int
    recommended: bool
    parent_plan_id: str | None
    default_trial: DefaultTrialOut | None
    entitlements: list[EntitlementOut]
    price_version: int | None
    charges: list[ChargeOut]
    compatible_addon_ids: list[str]
    metadata: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


# ---- add-ons ---------------------------------------------------------------------------


class AddonCreate(ApiStruct):
    id: RefId
    product_id: RefId
    name: Name
    description: Description | None = None
    pricing_type: PricingType = PricingType.PAID
    display_order: int = 0
    max_quantity: Annotated[int, msgspec.Meta(ge=1)] | None = None
    entitlements: Entitlements = msgspec.field(default_factory=list)
    charges: Charges = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)


class AddonUpdate(ApiStruct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    pricing_type: PricingType | UnsetType = UNSET
    display_order: int | UnsetType = UNSET
    max_quantity: Annotated[int, msgspec.Meta(ge=1)] | UnsetType | None = UNSET
    entitlements: Entitlements | UnsetType = UNSET
    charges: Charges | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


class AddonOut(OutStruct):
    id: str
    product_id: str
    name: str
    description: str | None
    pricing_type: PricingType
    status: PlanStatus
    display_order: int
    max_quantity: int | None
    entitlements: list[EntitlementOut]
    price_version: int | None
    charges: list[ChargeOut]
    compatible_plan_ids: list[str]
    metadata: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


# ---- coupons ---------------------------------------------------------------------------


class CouponCreate(ApiStruct):
    id: RefId
    name: Name
    duration: DiscountDuration
    description: Description | None = None
    percent_off: Decimal | None = None
    amount_off: Annotated[int, msgspec.Meta(ge=1, le=99_999_999_999)] | None = None
    currency: CurrencyCode | None = None
    duration_in_months: Annotated[int, msgspec.Meta(ge=1, le=120)] | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class CouponUpdate(ApiStruct):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET


class CouponOut(OutStruct):
    id: str
    name: str
    description: str | None
    percent_off: float | None  # display only; stored exactly in basis points
    amount_off: int | None
    currency: str | None
    duration: DiscountDuration
    duration_in_months: int | None
    status: CatalogStatus
    metadata: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


class ListQuery(msgspec.Struct, kw_only=True):
    limit: int = 20
    starting_after: str | None = None
    status: str | None = None
    product_id: str | None = None
