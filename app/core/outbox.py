"""Domain change events, written in the same transaction as the change they describe.

The domain does not know Stripe exists: it only records "customer 42 changed". The billing
sync (app/billing) consumes these rows and decides what Stripe must learn.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigIntPK, utcnow


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_pending", "processed_at", "available_at"),)
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    environment_pk: Mapped[int] = mapped_column(ForeignKey("environments.pk", ondelete="CASCADE"), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_pk: Mapped[int] = mapped_column()
    change: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


def record_change(
    session: AsyncSession, environment_pk: int, entity_type: str, entity_pk: int, change: str
) -> None:
    """Queue a change notice; it commits or rolls back together with the change itself."""
    session.add(
        OutboxEvent(
            environment_pk=environment_pk, entity_type=entity_type, entity_pk=entity_pk, change=change
        )
    )
