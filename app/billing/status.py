"""Reading sync states for the API and the console: status, reason, billing id, dashboard link."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import case, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.gateway import dashboard_url
from app.billing.jobs import ReconcileProgress, reconcile_environment
from app.billing.mapping import REASONS
from app.billing.models import IntegrationStatus, StripeIntegration, StripeMode, SyncState, SyncStatus
from app.billing.sync import mark_pending
from app.catalog.models import Addon, Coupon, Plan
from app.core.errors import InvalidRequest, not_found
from app.core.outbox import OutboxEvent
from app.core.pagination import Page, check_limit
from app.core.schemas import OutStruct
from app.customers.models import Customer
from app.db import Database
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

# Where each entity's billing object lives in Stripe's dashboard (a plan's is its product).
DASHBOARD_SECTIONS = {
    "plan": "products",
    "addon": "products",
    "coupon": "coupons",
    "customer": "customers",
    "subscription": "subscriptions",
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


class ReconciledOut(OutStruct):
    entity_type: str
    entity_id: str
    status: SyncStatus
    changed: bool
    error_message: str | None


class ReconcileOut(OutStruct):
    checked: int
    changed: int
    failed: int
    # Left PENDING after a transient error: the worker retries them.
    pending: int
    not_synced: int
    # What Stripe had to change (or could not, or not yet), entity by entity; at most
    # MAX_REPORTED_ENTITIES of them, `entitiesNotListed` more.
    entities: list[ReconciledOut]
    entities_not_listed: int
    # "plan SYNCED" -> how many, after the reconcile.
    by_status: dict[str, int]


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


async def stripe_connected(session: AsyncSession, env: EnvironmentRef) -> bool:
    return await _integration(session, env.pk) is not None


# Not synced for a reason a second look cannot change: the change that lifts it queues the
# entity by itself (publishing a draft, connecting Stripe), or nothing will (an ended
# subscription, a free or custom-price plan). Every other reason may have gone meanwhile (the
# customer got a paid plan, its failure was fixed): those can be checked again.
SETTLED_REASONS = frozenset({"draft", "ended", "free_plan", "custom_plan", "no_integration"})


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
            DASHBOARD_SECTIONS.get(state.entity_type),
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
        can_retry=state.status is SyncStatus.FAILED
        or (state.status is SyncStatus.NOT_SYNCED and state.reason not in SETTLED_REASONS),
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


# "attention": what needs someone first (FAILED, then PENDING, then the rest), newest first within each.
SyncOrder = Literal["newest", "attention"]
_ATTENTION = case({SyncStatus.FAILED: 0, SyncStatus.PENDING: 1}, value=SyncState.status, else_=2)


async def list_sync_states(
    session: AsyncSession,
    settings: Settings,
    env: EnvironmentRef,
    *,
    entity_type: str | None,
    status: str | None,
    limit: int,
    starting_after: str | None,
    order: SyncOrder = "newest",
) -> Page[SyncStateOut]:
    check_limit(limit)
    query = select(SyncState, _ATTENTION.label("rank")).where(SyncState.environment_pk == env.pk)
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
        # Cursors: "<pk>" newest first, "<rank>.<pk>" in attention order.
        rank, _, pk = starting_after.rpartition(".")
        if not pk.isdigit() or (order == "attention") != rank.isdigit():
            raise InvalidRequest("startingAfter is not a cursor from this list.", code="invalid_cursor")
        if order == "attention":
            query = query.where(tuple_(_ATTENTION, -SyncState.pk) > tuple_(int(rank), -int(pk)))
        else:
            query = query.where(SyncState.pk < int(pk))
    ordering = (_ATTENTION, SyncState.pk.desc()) if order == "attention" else (SyncState.pk.desc(),)
    found = (await session.execute(query.order_by(*ordering).limit(limit + 1))).all()
    has_more = len(found) > limit
    found = found[:limit]
    rows = [r[0] for r in found]
    refs = await entity_refs(session, [(r.entity_type, r.entity_pk) for r in rows])
    integration = await _integration(session, env.pk)
    data = [_out(settings, integration, r, refs.get((r.entity_type, r.entity_pk), "")) for r in rows]
    cursor = None
    if has_more and found:
        last, rank_of_last = found[-1]
        cursor = f"{rank_of_last}.{last.pk}" if order == "attention" else str(last.pk)
    return Page(data=data, has_more=has_more, next_cursor=cursor)


async def entity_refs(
    session: AsyncSession, entities: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """Our public ids of (entity type, pk) pairs: one query per entity type present."""
    refs: dict[tuple[str, int], str] = {}
    for kind, model in MODELS.items():
        pks = [pk for entity_type, pk in entities if entity_type == kind]
        if pks:
            for pk, ref in (
                await session.execute(select(model.pk, model.ref).where(model.pk.in_(pks)))
            ).all():
                refs[(kind, pk)] = ref
    return refs


@dataclass
class SyncBadges:
    """The sync states of one page of entities of one type, by our id (for the console)."""

    connected: bool
    states: dict[str, SyncStateOut] = field(default_factory=dict)
    # Changed since their state was written, the change not yet picked up by the worker: their
    # shown state is about to be replaced (e.g. a plan just published still says "draft").
    queued: set[str] = field(default_factory=set)

    def get(self, ref: str) -> SyncStateOut | None:
        return self.states.get(ref)


async def sync_states_for(
    session: AsyncSession, settings: Settings, env: EnvironmentRef, entity_type: str, refs: Sequence[str]
) -> SyncBadges:
    """Batch `sync_state_for` for a list page: one query for all the rows, whatever their number
    (and one for the changes still waiting in the outbox)."""
    model = _check_type(entity_type)
    integration = await _integration(session, env.pk)
    badges = SyncBadges(connected=integration is not None)
    if not refs:
        return badges
    rows = (
        await session.execute(
            select(model.pk, model.ref, SyncState)
            .outerjoin(
                SyncState,
                (SyncState.entity_pk == model.pk)
                & (SyncState.entity_type == entity_type)
                & (SyncState.environment_pk == env.pk),
            )
            .where(model.environment_pk == env.pk, model.ref.in_(set(refs)))
        )
    ).all()
    for _, ref, state in rows:
        if state is not None:
            badges.states[ref] = _out(settings, integration, state, ref)
    refs_by_pk = {pk: ref for pk, ref, _ in rows}
    # Not connected: the worker drops the changes without syncing, so nothing is on its way.
    if refs_by_pk and integration is not None:
        waiting = await session.scalars(
            select(OutboxEvent.entity_pk).where(
                OutboxEvent.processed_at.is_(None),
                OutboxEvent.environment_pk == env.pk,
                OutboxEvent.entity_type == entity_type,
                OutboxEvent.entity_pk.in_(refs_by_pk),
            )
        )
        badges.queued = {refs_by_pk[pk] for pk in waiting.all()}
    return badges


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


# A report is kept (and shown) whole; an environment whose every entity changed lists the first ones.
MAX_REPORTED_ENTITIES = 1000


async def reconcile(
    database: Database, settings: Settings, env: EnvironmentRef, progress: ReconcileProgress | None = None
) -> ReconcileOut:
    """Reconcile one environment now; its report with our ids (a requested reconcile run)."""
    report = await reconcile_environment(database, settings, env.pk, progress)
    listed = report.entities[:MAX_REPORTED_ENTITIES]
    async with database.session() as session:
        refs = await entity_refs(session, [(e.entity_type, e.entity_pk) for e in listed])
    return ReconcileOut(
        checked=report.checked,
        changed=report.changed,
        failed=report.failed,
        pending=sum(e.status is SyncStatus.PENDING for e in report.entities),
        not_synced=report.not_synced,
        entities_not_listed=len(report.entities) - len(listed),
        entities=[
            ReconciledOut(
                entity_type=e.entity_type,
                entity_id=refs.get((e.entity_type, e.entity_pk), ""),
                status=e.status,
                changed=e.changed,
                error_message=e.error,
            )
            for e in listed
        ],
        by_status=dict(sorted(report.by_type.items())),
    )
