"""The pricing catalog: features, products, plans, add-ons, entitlements, versioned prices, coupons."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.enums import enum_column
from app.db import Base, TimestampedBase


class FeatureType(StrEnum):
    BOOLEAN = "BOOLEAN"
    NUMBER = "NUMBER"
    METERED = "METERED"


class MeterType(StrEnum):
    INCREMENTAL = "INCREMENTAL"  # counters that reset, e.g. API calls per month
    FLUCTUATING = "FLUCTUATING"  # levels that go up and down, e.g. seats


class CatalogStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


class PlanStatus(StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"
    ARCHIVED = "ARCHIVED"


class PricingType(StrEnum):
    FREE = "FREE"
    PAID = "PAID"
    CUSTOM = "CUSTOM"


class TrialEndBehavior(StrEnum):
    CONVERT_TO_PAID = "CONVERT_TO_PAID"
    CANCEL_SUBSCRIPTION = "CANCEL_SUBSCRIPTION"


class ResetPeriod(StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"
    BILLING_PERIOD = "BILLING_PERIOD"


class BillingPeriod(StrEnum):
    MONTHLY = "MONTHLY"
    ANNUALLY = "ANNUALLY"


class BillingModel(StrEnum):
    FLAT_FEE = "FLAT_FEE"
    PER_UNIT = "PER_UNIT"
    TIERED = "TIERED"
    USAGE_BASED = "USAGE_BASED"


class TiersMode(StrEnum):
    VOLUME = "VOLUME"
    GRADUATED = "GRADUATED"


class DiscountDuration(StrEnum):
    ONCE = "ONCE"
    REPEATING = "REPEATING"
    FOREVER = "FOREVER"


class Feature(TimestampedBase):
    __tablename__ = "features"
    __table_args__ = (UniqueConstraint("environment_pk", "ref"),)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    feature_type: Mapped[FeatureType] = mapped_column(enum_column(FeatureType))
    meter_type: Mapped[MeterType | None] = mapped_column(enum_column(MeterType))
    unit_singular: Mapped[str | None] = mapped_column(String(100))
    unit_plural: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[CatalogStatus] = mapped_column(enum_column(CatalogStatus), default=CatalogStatus.ACTIVE)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Product(TimestampedBase):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("environment_pk", "ref"),)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[CatalogStatus] = mapped_column(enum_column(CatalogStatus), default=CatalogStatus.ACTIVE)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


plan_addons = Table(
    "plan_addons",
    Base.metadata,
    Column("plan_pk", ForeignKey("plans.pk", ondelete="CASCADE"), primary_key=True),
    Column("addon_pk", ForeignKey("addons.pk", ondelete="CASCADE"), primary_key=True),
)


class Plan(TimestampedBase):
    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("environment_pk", "ref"),)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    product_pk: Mapped[int] = mapped_column(ForeignKey("products.pk"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    pricing_type: Mapped[PricingType] = mapped_column(enum_column(PricingType))
    status: Mapped[PlanStatus] = mapped_column(enum_column(PlanStatus), default=PlanStatus.DRAFT)
    display_order: Mapped[int] = mapped_column(Integer, default=0)
    recommended: Mapped[bool] = mapped_column(default=False)
    parent_plan_pk: Mapped[int | None] = mapped_column(ForeignKey("plans.pk"))
    trial_days: Mapped[int | None] = mapped_column(Integer)
    trial_end_behavior: Mapped[TrialEndBehavior] = mapped_column(
        enum_column(TrialEndBehavior), default=TrialEndBehavior.CONVERT_TO_PAID
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    product: Mapped[Product] = relationship(lazy="raise")
    parent_plan: Mapped[Plan | None] = relationship(remote_side="Plan.pk", lazy="raise")
    entitlements: Mapped[list[Entitlement]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", lazy="raise", foreign_keys="Entitlement.plan_pk"
    )
    addons: Mapped[list[Addon]] = relationship(secondary=plan_addons, back_populates="plans", lazy="raise")


class Addon(TimestampedBase):
    __tablename__ = "addons"
    __table_args__ = (UniqueConstraint("environment_pk", "ref"),)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    product_pk: Mapped[int] = mapped_column(ForeignKey("products.pk"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    pricing_type: Mapped[PricingType] = mapped_column(enum_column(PricingType), default=PricingType.PAID)
    status: Mapped[PlanStatus] = mapped_column(enum_column(PlanStatus), default=PlanStatus.DRAFT)
    display_order: Mapped[int] = mapped_column(Integer, default=0)
    max_quantity: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    product: Mapped[Product] = relationship(lazy="raise")
    entitlements: Mapped[list[Entitlement]] = relationship(
        back_populates="addon",
        cascade="all, delete-orphan",
        lazy="raise",
        foreign_keys="Entitlement.addon_pk",
    )
    plans: Mapped[list[Plan]] = relationship(secondary=plan_addons, back_populates="addons", lazy="raise")


class Entitlement(Base):
    """What a plan or add-on grants for one feature."""

    __tablename__ = "entitlements"
    __table_args__ = (
        CheckConstraint("(plan_pk IS NULL) <> (addon_pk IS NULL)", name="one_owner"),
        UniqueConstraint("plan_pk", "feature_pk"),
        UniqueConstraint("addon_pk", "feature_pk"),
    )
    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    plan_pk: Mapped[int | None] = mapped_column(ForeignKey("plans.pk", ondelete="CASCADE"), index=True)
    addon_pk: Mapped[int | None] = mapped_column(ForeignKey("addons.pk", ondelete="CASCADE"), index=True)
    feature_pk: Mapped[int] = mapped_column(ForeignKey("features.pk"), index=True)
    usage_limit: Mapped[int | None] = mapped_column(BigInteger)
    unlimited: Mapped[bool] = mapped_column(default=False)
    soft_limit: Mapped[bool] = mapped_column(default=False)
    reset_period: Mapped[ResetPeriod | None] = mapped_column(enum_column(ResetPeriod))
    display_order: Mapped[int] = mapped_column(Integer, default=0)

    plan: Mapped[Plan | None] = relationship(
        back_populates="entitlements", lazy="raise", foreign_keys=[plan_pk]
    )
    addon: Mapped[Addon | None] = relationship(
        back_populates="entitlements", lazy="raise", foreign_keys=[addon_pk]
    )
    feature: Mapped[Feature] = relationship(lazy="raise")


class PriceVersion(TimestampedBase):
    """An immutable set of charges. Changing a published price creates the next version."""

    __tablename__ = "price_versions"
    __table_args__ = (
        CheckConstraint("(plan_pk IS NULL) <> (addon_pk IS NULL)", name="one_owner"),
        UniqueConstraint("plan_pk", "version"),
        UniqueConstraint("addon_pk", "version"),
    )
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    plan_pk: Mapped[int | None] = mapped_column(ForeignKey("plans.pk", ondelete="CASCADE"), index=True)
    addon_pk: Mapped[int | None] = mapped_column(ForeignKey("addons.pk", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)

    charges: Mapped[list[Charge]] = relationship(
        back_populates="price_version", cascade="all, delete-orphan", lazy="raise", order_by="Charge.pk"
    )


class Charge(Base):
    """One price line of a price version, for one billing period and currency."""

    __tablename__ = "charges"
    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    price_version_pk: Mapped[int] = mapped_column(
        ForeignKey("price_versions.pk", ondelete="CASCADE"), index=True
    )
    billing_period: Mapped[BillingPeriod] = mapped_column(enum_column(BillingPeriod))
    currency: Mapped[str] = mapped_column(String(3))
    billing_model: Mapped[BillingModel] = mapped_column(enum_column(BillingModel))
    # FLAT_FEE: the amount; PER_UNIT / USAGE_BASED: the price of one unit. Minor units.
    amount: Mapped[int | None] = mapped_column(BigInteger)
    feature_pk: Mapped[int | None] = mapped_column(ForeignKey("features.pk"))
    tiers_mode: Mapped[TiersMode | None] = mapped_column(enum_column(TiersMode))
    # [{"upTo": int | null, "unitAmount": int, "flatAmount": int}], ascending; last upTo is null.
    tiers: Mapped[list[Any] | None] = mapped_column()
    min_quantity: Mapped[int | None] = mapped_column(Integer)
    max_quantity: Mapped[int | None] = mapped_column(Integer)

    price_version: Mapped[PriceVersion] = relationship(back_populates="charges", lazy="raise")
    feature: Mapped[Feature | None] = relationship(lazy="raise")


class Coupon(TimestampedBase):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("environment_pk", "ref"),
        CheckConstraint("(percent_off_bp IS NULL) <> (amount_off IS NULL)", name="one_discount"),
    )
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # Percent off in basis points (12.5 % = 1250): exact, no floats.
    percent_off_bp: Mapped[int | None] = mapped_column(Integer)
    amount_off: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[DiscountDuration] = mapped_column(enum_column(DiscountDuration))
    duration_in_months: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[CatalogStatus] = mapped_column(enum_column(CatalogStatus), default=CatalogStatus.ACTIVE)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
