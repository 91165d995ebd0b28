from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import TimestampedBase


class Customer(TimestampedBase):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("environment_pk", "ref"),)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # {"address": {...}, "invoiceName": str, "taxIds": [{"type", "value"}], "phone": str}
    billing_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    currency: Mapped[str | None] = mapped_column(String(3))
    coupon_pk: Mapped[int | None] = mapped_column(ForeignKey("coupons.pk"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    archived_at: Mapped[dt.datetime | None] = mapped_column()
    # Stripe's id for this customer, once the sync has created it there.
    billing_id: Mapped[str | None] = mapped_column(String(100), index=True)
    has_payment_method: Mapped[bool] = mapped_column(default=False)
    # Effective entitlements, materialised on every change that affects them so the
    # hot path ("may C use F?") is one primary-key read. NULL or expired = recompute.
    entitlements_snapshot: Mapped[dict[str, Any] | None] = mapped_column()
    snapshot_valid_until: Mapped[dt.datetime | None] = mapped_column()
