"""Marking materialised entitlements stale. Lives here because the snapshot is a customer column."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.models import Customer


async def invalidate_environment_entitlements(session: AsyncSession, environment_pk: int) -> None:
    """A catalog change (a plan's entitlements, a parent plan) may touch anyone: recompute lazily."""
    await session.execute(
        update(Customer)
        .where(Customer.environment_pk == environment_pk, Customer.entitlements_snapshot.is_not(None))
        .values(entitlements_snapshot=None, snapshot_valid_until=None)
    )
