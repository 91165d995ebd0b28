"""Subscriptions, their add-ons, and usage."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.catalog.models import BillingPeriod, Plan
from app.core.enums import enum_column
from app.customers.models import Customer
from app.db import Base, BigIntPK, TimestampedBase, utcnow


class SubscriptionStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    IN_TRIAL = "IN_TRIAL"
    ACTIVE = "ACTIVE"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class UsageUpdateBehavior(StrEnum):
    DELTA = "DELTA"
    SET = "SET"


class Subscription(TimestampedBase):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("environment_pk", "ref"),
        Index("ix_subscriptions_customer_product", "customer_pk", "product_pk"),
    )
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(100))
    customer_pk: Mapped[int] = mapped_column(ForeignKey("customers.pk", ondelete="CASCADE"))
    product_pk: Mapped[int] = mapped_column(ForeignKey("products.pk"))
    plan_pk: Mapped[int] = mapped_column(ForeignKey("plans.pk"), index=True)
    price_version_pk: Mapped[int | None] = mapped_column(ForeignKey("price_versions.pk"), index=True)
    billing_period: Mapped[BillingPeriod] = mapped_column(enum_column(BillingPeriod))
    status: Mapped[SubscriptionStatus] = mapped_column(enum_column(SubscriptionStatus), index=True)
    start_date: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Periods are computed from the anchor, so a renewal needs no job to have happened.
    billing_anchor: Mapped[dt.datetime] = mapped_column(default=utcnow)
    current_period_start: Mapped[dt.datetime] = mapped_column()
    current_period_end: Mapped[dt.datetime] = mapped_column()
    trial_end: Mapped[dt.datetime | None] = mapped_column()
    # Set when the subscription is to end at a known time (cancel at period end).
    cancel_at: Mapped[dt.datetime | None] = mapped_column()
    canceled_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    # First moment it was paid for (or active on a free/custom plan): trials are not repeated after it.
    activated_at: Mapped[dt.datetime | None] = mapped_column()
    coupon_pk: Mapped[int | None] = mapped_column(ForeignKey("coupons.pk"))
    # {featureId: quantity} for PER_UNIT / TIERED charges.
    unit_quantities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A downgrade or billing-period change waiting for the period end:
    # {"planId", "billingPeriod", "unitQuantities", "addons", "priceVersionPk"}
    scheduled_change: Mapped[dict[str, Any] | None] = mapped_column()
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    billing_id: Mapped[str | None] = mapped_column(String(100), index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    customer: Mapped[Customer] = relationship(lazy="raise")
    plan: Mapped[Plan] = relationship(lazy="raise")
    addons: Mapped[list[SubscriptionAddon]] = relationship(
        back_populates="subscription",
        cascade="all, delete-orphan",
        lazy="raise",
        order_by="SubscriptionAddon.pk",
    )


class SubscriptionAddon(Base):
    __tablename__ = "subscription_addons"
    __table_args__ = (UniqueConstraint("subscription_pk", "addon_pk"),)
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subscription_pk: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True
    )
    addon_pk: Mapped[int] = mapped_column(ForeignKey("addons.pk"), index=True)
    price_version_pk: Mapped[int | None] = mapped_column(ForeignKey("price_versions.pk"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)

    subscription: Mapped[Subscription] = relationship(back_populates="addons", lazy="raise")


class UsageEvent(Base):
    """Every accepted usage report, kept for audit and for billing closed periods."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("environment_pk", "idempotency_key"),
        Index("ix_usage_events_customer_feature_time", "customer_pk", "feature_pk", "timestamp"),
    )
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"))
    customer_pk: Mapped[int] = mapped_column(ForeignKey("customers.pk", ondelete="CASCADE"))
    feature_pk: Mapped[int] = mapped_column(ForeignKey("features.pk"))
    value: Mapped[int] = mapped_column(BigInteger)
    behavior: Mapped[UsageUpdateBehavior] = mapped_column(enum_column(UsageUpdateBehavior))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UsageCounter(Base):
    """Current usage of one metered feature by one customer, within `window_start`'s window."""

    __tablename__ = "usage_counters"
    customer_pk: Mapped[int] = mapped_column(ForeignKey("customers.pk", ondelete="CASCADE"), primary_key=True)
    feature_pk: Mapped[int] = mapped_column(ForeignKey("features.pk"), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    window_start: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
