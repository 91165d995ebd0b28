"""What Tollgate keeps about Stripe: the integration per environment, sync state per entity,
the Stripe objects each entity maps to, and received webhook events."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.enums import enum_column
from app.db import Base, BigIntPK, TimestampedBase, utcnow


class StripeMode(StrEnum):
    SANDBOX = "SANDBOX"  # the built-in offline sandbox: no account, no real money
    TEST = "TEST"  # the user's own Stripe account in test mode
    LIVE = "LIVE"


class IntegrationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REMOVED = "REMOVED"


class StripeIntegration(TimestampedBase):
    __tablename__ = "stripe_integrations"
    environment_pk: Mapped[int] = mapped_column(
        ForeignKey("environments.pk", ondelete="CASCADE"), unique=True
    )
    # Our public id for the integration; the webhook URL carries it.
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    mode: Mapped[StripeMode] = mapped_column(enum_column(StripeMode))
    status: Mapped[IntegrationStatus] = mapped_column(enum_column(IntegrationStatus))
    # Encrypted with app.core.crypto.SecretBox; never returned, logged or rendered.
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_key_hint: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(100))
    account_name: Mapped[str | None] = mapped_column(String(200))
    webhook_endpoint_id: Mapped[str | None] = mapped_column(String(100))
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    sync_customers: Mapped[bool] = mapped_column(default=True)
    sync_subscriptions: Mapped[bool] = mapped_column(default=True)
    stripe_tax: Mapped[bool] = mapped_column(default=False)
    # Stripe's invoice finalization grace period in seconds, as last read (usage billing needs >= 1 h).
    invoice_grace_period_seconds: Mapped[int | None] = mapped_column(Integer)
    # The Billing Portal configuration Tollgate created (and keeps) in this account.
    portal_configuration_id: Mapped[str | None] = mapped_column(String(100))
    # The newest Stripe event processed, for the catch-up job.
    last_event_created: Mapped[int | None] = mapped_column()
    removed_at: Mapped[dt.datetime | None] = mapped_column()


class SyncStatus(StrEnum):
    SYNCED = "SYNCED"
    PENDING = "PENDING"
    FAILED = "FAILED"
    NOT_SYNCED = "NOT_SYNCED"


class SyncState(Base):
    """Where one of our entities stands with Stripe."""

    __tablename__ = "sync_states"
    __table_args__ = (
        UniqueConstraint("entity_type", "entity_pk"),
        Index("ix_sync_states_due", "status", "next_attempt_at"),
    )
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_pk: Mapped[int] = mapped_column()
    status: Mapped[SyncStatus] = mapped_column(enum_column(SyncStatus))
    # Why it is NOT_SYNCED (a stable code such as "free_plan"), shown with a sentence.
    reason: Mapped[str | None] = mapped_column(String(64))
    billing_id: Mapped[str | None] = mapped_column(String(100), index=True)
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    # Bumped by every change; the worker records the version it made Stripe match.
    desired_version: Mapped[int] = mapped_column(Integer, default=1)
    synced_version: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[dt.datetime | None] = mapped_column()
    last_synced_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StripeObject(Base):
    """A Stripe object that stands for (part of) one of our entities, e.g. one price of a plan."""

    __tablename__ = "stripe_objects"
    __table_args__ = (UniqueConstraint("environment_pk", "entity_type", "entity_pk", "role"),)
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_pk: Mapped[int] = mapped_column()
    # "product", "price:<price version pk>:<charge pk>", "subscription_item:<...>", ...
    role: Mapped[str] = mapped_column(String(120))
    stripe_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    FAILED = "FAILED"


class WebhookEvent(Base):
    """A Stripe event as received, raw body kept, processed later by a worker."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("integration_pk", "event_id"),
        Index("ix_webhook_events_pending", "status", "received_at"),
    )
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    integration_pk: Mapped[int] = mapped_column(ForeignKey("stripe_integrations.pk", ondelete="CASCADE"))
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[WebhookStatus] = mapped_column(enum_column(WebhookStatus), default=WebhookStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column()


class CheckoutStatus(StrEnum):
    OPEN = "OPEN"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"


class CheckoutSession(Base):
    """A hosted Checkout Session Tollgate opened for one of our subscriptions.

    `token` is the unguessable part of our return URL: the browser comes back through
    Tollgate, which appends the result to the caller's own URLs kept here.
    """

    __tablename__ = "checkout_sessions"
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    subscription_pk: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True
    )
    customer_pk: Mapped[int] = mapped_column(ForeignKey("customers.pk", ondelete="CASCADE"))
    stripe_id: Mapped[str] = mapped_column(String(100), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[CheckoutStatus] = mapped_column(enum_column(CheckoutStatus), index=True)
    url: Mapped[str | None] = mapped_column(Text)
    success_url: Mapped[str] = mapped_column(Text)
    cancel_url: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class ReconcileStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"  # the run itself broke (its error is kept); entity failures are in the report


_ACTIVE_RUN = text("status IN ('QUEUED', 'RUNNING')")


class ReconcileRun(Base):
    """A reconcile of one environment that someone asked for (console or API); a worker runs it.

    At most one queued or running per environment (the partial unique index): asking again
    meanwhile finds that one instead of queueing a second.
    """

    __tablename__ = "reconcile_runs"
    __table_args__ = (
        Index(
            "uq_reconcile_runs_active",
            "environment_pk",
            unique=True,
            sqlite_where=_ACTIVE_RUN,
            postgresql_where=_ACTIVE_RUN,
        ),
    )
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[ReconcileStatus] = mapped_column(enum_column(ReconcileStatus), index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    # Progress while running: entities checked so far of the environment's total.
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    # The report (`ReconcileOut` as JSON) once FINISHED; the error once FAILED.
    report: Mapped[dict[str, Any] | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(Text)
