"""Reading sync states for the API and the console: status, reason, billing id, dashboard link."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.gateway import dashboard_url
from app.billing.mapping import REASONS
from app.billing.models import IntegrationStatus, StripeIntegration, StripeMode, SyncState, SyncStatus
from app.billing.sync import mark_pending
from app.catalog.models import Addon, Coupon, Plan
from app.core.errors import InvalidRequest, not_found
from app.core.pagination import Page, check_limit
from app.core.schemas import OutStruct
from app.customers.models import Customer
from app.environments.service import EnvironmentRef
from app.settings import Settings, load_settings
from app.subscriptions.models import Subscription

MODELS: dict[str, Any] = {
    "plan": Plan,
    "addon": Addon,
    "coupon": Coupon,
    "customer": Customer,
    "subscription": Subscription,
}


class SyncStateOut(OutStruct):
    entity_type: str
    entity_id: str
    status: SyncStatus
    reason: str | None
    reason_text: str | None
    billing_id: str | None
    dashboard_url: str | None
    error_message: str | None
    attempts: int
    next_attempt_at: dt.datetime | None
    last_synced_at: dt.datetime | None
    updated_at: dt.datetime
    can_retry: bool


def _check_type(entity_type: str) -> Any:
    model = MODELS.get(entity_type)
    if model is None:
        raise InvalidRequest(
            f"entityType must be one of {', '.join(MODELS)}.", code="invalid_entity_type", param="entityType"
        )
    return model


async def _integration(session: AsyncSession, env_pk: int) -> StripeIntegration | None:
    return await session.scalar(
        select(StripeIntegration).where(
            StripeIntegration.environment_pk == env_pk, StripeIntegration.status == IntegrationStatus.ACTIVE
        )
    )


def _out(
    settings: Settings, integration: StripeIntegration | None, state: SyncState, ref: str
) -> SyncStateOut:
    link = None
    if state.billing_id and integration is not None:
        link = dashboard_url(
            settings,
            integration.mode is StripeMode.SANDBOX,
            integration.mode is StripeMode.LIVE,
            state.billing_id,
        )
    return SyncStateOut(
        entity_type=state.entity_type,
        entity_id=ref,
        status=state.status,
        reason=state.reason,
        reason_text=REASONS.get(state.reason) if state.reason else None,
        billing_id=state.billing_id,
        dashboard_url=link,
        error_message=state.error_message,
        attempts=state.attempts,
        next_attempt_at=state.next_attempt_at,
        last_synced_at=state.last_synced_at,
        updated_at=state.updated_at,
        can_retry=state.status in (SyncStatus.FAILED, SyncStatus.NOT_SYNCED),
    )


async def sync_state_for(
    session: AsyncSession,
    env: EnvironmentRef,
    entity_type: str,
    entity_pk: int,
    *,
    settings: Settings | None = None,
) -> SyncStateOut | None:
    """The console's one call: where does this entity stand with Stripe (None: never queued)."""
    settings = settings or load_settings()
    model = _check_type(entity_type)
    state = await session.scalar(
        select(SyncState).where(
            SyncState.environment_pk == env.pk,
            SyncState.entity_type == entity_type,
            SyncState.entity_pk == entity_pk,
        )
    )
    if state is None:
        return None
    ref = await session.scalar(select(model.ref).where(model.pk == entity_pk))
    return _out(settings, await _integration(session, env.pk), state, ref or "")


async def list_sync_states(
    session: AsyncSession,
    settings: Settings,
    env: EnvironmentRef,
    *,
    entity_type: str | None,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> Page[SyncStateOut]:
    check_limit(limit)
    query = select(SyncState).where(SyncState.environment_pk == env.pk)
    if entity_type:
        _check_type(entity_type)
        query = query.where(SyncState.entity_type == entity_type)
    if status:
        try:
            query = query.where(SyncState.status == SyncStatus(status))
        except ValueError:
            raise InvalidRequest(
                f"status must be one of {', '.join(s.value for s in SyncStatus)}.",
                code="invalid_status",
                param="status",
            ) from None
    if starting_after:
        if not starting_after.isdigit():
            raise InvalidRequest("startingAfter is not a cursor from this list.", code="invalid_cursor")
        query = query.where(SyncState.pk < int(starting_after))
    rows = list((await session.scalars(query.order_by(SyncState.pk.desc()).limit(limit + 1))).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    refs: dict[tuple[str, int], str] = {}
    for kind, model in MODELS.items():
        pks = [r.entity_pk for r in rows if r.entity_type == kind]
        if pks:
            for pk, ref in (
                await session.execute(select(model.pk, model.ref).where(model.pk.in_(pks)))
            ).all():
                refs[(kind, pk)] = ref
    integration = await _integration(session, env.pk)
    data = [_out(settings, integration, r, refs.get((r.entity_type, r.entity_pk), "")) for r in rows]
    return Page(data=data, has_more=has_more, next_cursor=str(rows[-1].pk) if has_more and rows else None)


async def retry_sync(
    session: AsyncSession, settings: Settings, env: EnvironmentRef, entity_type: str, ref: str
) -> SyncStateOut:
    model = _check_type(entity_type)
    pk = await session.scalar(select(model.pk).where(model.environment_pk == env.pk, model.ref == ref))
    if pk is None:
        raise not_found(entity_type, ref)
    targets = {(env.pk, entity_type, pk)}
    if entity_type == "customer":
        # Its subscriptions wait for it: retry them together.
        for sub_pk in (
            await session.scalars(select(Subscription.pk).where(Subscription.customer_pk == pk))
        ).all():
            targets.add((env.pk, "subscription", sub_pk))
    await mark_pending(session, targets, dt.datetime.now(dt.UTC))
    out = await sync_state_for(session, env, entity_type, pk, settings=settings)
    assert out is not None
    return out
