"""Webhook events: what Stripe sent this environment, filtered by status and type, and one event."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext
from app.admin.rendering import render
from app.billing.webhook_log import STATUSES, get_webhook_event, list_webhook_events


class WebhookEventController(Controller):
    path = "/webhooks"

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        status: Annotated[str | None, Parameter(query="status", max_length=20)] = None,
        event_type: Annotated[str | None, Parameter(query="type", max_length=100)] = None,
        after: Annotated[str | None, Parameter(query="after", max_length=100)] = None,
    ) -> Response[str]:
        page = await list_webhook_events(
            db_session, ctx.env_ref, status=status, event_type=(event_type or "").strip() or None, after=after
        )
        return render(
            request,
            "admin/webhooks/list.html",
            {"ctx": ctx, "section": "webhooks", "page": page, "statuses": STATUSES},
        )

    @get("/{event_id:str}")
    async def detail(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, event_id: str
    ) -> Response[str]:
        event = await get_webhook_event(db_session, ctx.env_ref, event_id)
        return render(
            request, "admin/webhooks/page.html", {"ctx": ctx, "section": "webhooks", "event": event}
        )
