"""The received Stripe events of one environment, for people: list (filtered and paged in SQL) and one event.

Reading only: receiving and processing live in app.billing.webhooks.
"""

from __future__ import annotations

import datetime as dt
import json

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import WebhookEvent, WebhookStatus
from app.core.errors import NotFound
from app.core.pagination import paginate
from app.core.schemas import OutStruct
from app.environments.service import EnvironmentRef

PAGE_SIZE = 25
STATUSES = [s.value for s in WebhookStatus]


class WebhookEventRow(OutStruct):
    event_id: str
    event_type: str
    object_id: str | None
    status: WebhookStatus
    attempts: int
    error: str | None
    received_at: dt.datetime
    processed_at: dt.datetime | None


class WebhookEventDetail(WebhookEventRow):
    # "webhook" (delivered by Stripe) or "catch-up" (listed from Stripe by the catch-up job).
    source: str
    payload: str  # pretty-printed when it is JSON, else as received


class WebhookEventPage(msgspec.Struct, kw_only=True):
    rows: list[WebhookEventRow]
    has_more: bool
    next_cursor: str | None
    status: str
    event_type: str
    event_types: list[str]  # the types this environment has received, for the filter's choices


def _row(event: WebhookEvent) -> WebhookEventRow:
    return WebhookEventRow(
        event_id=event.event_id,
        event_type=event.event_type,
        object_id=event.object_id,
        status=event.status,
        attempts=event.attempts,
        error=event.error,
        received_at=event.received_at,
        processed_at=event.processed_at,
    )


async def list_webhook_events(
    session: AsyncSession,
    env: EnvironmentRef,
    *,
    status: str | None = None,
    event_type: str | None = None,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> WebhookEventPage:
    """Newest first. An unknown status in the address shows every status rather than failing."""
    query = select(WebhookEvent).where(WebhookEvent.environment_pk == env.pk)
    if status in STATUSES:
        query = query.where(WebhookEvent.status == status)
    if event_type:
        query = query.where(WebhookEvent.event_type == event_type)
    rows, more = await paginate(
        session,
        query,
        WebhookEvent,
        environment_pk=env.pk,
        limit=limit,
        starting_after=after,
        entity="webhook_event",
        key=WebhookEvent.event_id,
    )
    types = await session.scalars(
        select(WebhookEvent.event_type)
        .where(WebhookEvent.environment_pk == env.pk)
        .distinct()
        .order_by(WebhookEvent.event_type)
    )
    return WebhookEventPage(
        rows=[_row(r) for r in rows],
        has_more=more,
        next_cursor=rows[-1].event_id if more else None,
        status=status if status in STATUSES else "",
        event_type=event_type or "",
        event_types=list(types),
    )


def _pretty(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return payload


async def get_webhook_event(session: AsyncSession, env: EnvironmentRef, event_id: str) -> WebhookEventDetail:
    # Event ids are unique per integration, and an environment has one integration row.
    event = await session.scalar(
        select(WebhookEvent).where(WebhookEvent.environment_pk == env.pk, WebhookEvent.event_id == event_id)
    )
    if event is None:
        raise NotFound(
            f"No webhook event '{event_id}' was received in this environment.", code="webhook_event_not_found"
        )
    return WebhookEventDetail(
        **msgspec.structs.asdict(_row(event)),
        source=str((event.headers or {}).get("source") or "webhook"),
        payload=_pretty(event.payload),
    )
