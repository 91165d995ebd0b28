"""Stripe sync in the console: every sync state of the environment (failures first), a Retry per
failed entity ("Check again" for one that will not be synced), "Reconcile now" (queued for a
worker; the page follows the run and then shows its report); and `sync_badges`, which the
entity pages and lists use to show each entity's billing id, dashboard link and status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext, flash, safe_next
from app.admin.forms import text
from app.admin.queries import PAGE_SIZE
from app.admin.rendering import redirect, render
from app.billing.mapping import ADMIN_PATHS
from app.billing.models import SyncStatus
from app.billing.reconcile_runs import get_run, latest_run, request_reconcile
from app.billing.status import (
    MODELS,
    SyncBadges,
    list_sync_states,
    retry_sync,
    stripe_connected,
    sync_states_for,
)
from app.settings import Settings

# Console section ("plans") -> synced entity type ("plan").
SYNCED_SECTIONS = {path: entity_type for entity_type, path in ADMIN_PATHS.items()}
TYPE_LABELS = {
    "plan": "Plan",
    "addon": "Add-on",
    "coupon": "Coupon",
    "customer": "Customer",
    "subscription": "Subscription",
}


def _settings(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state["settings"]


async def sync_badges(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    ctx: AdminContext,
    entity_type: str,
    refs: Sequence[str],
) -> SyncBadges:
    """The sync states of a page's entities, in one query (for `components/sync.html`)."""
    return await sync_states_for(db_session, _settings(request), ctx.env_ref, entity_type, refs)


class SyncController(Controller):
    path = "/sync"

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        settings: Settings,
        entity_type: str | None = None,
        status: str | None = None,
        after: str | None = None,
    ) -> Response[str]:
        return await self._page(request, ctx, db_session, settings, entity_type, status, after)

    @post("/reconcile")
    async def reconcile_now(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        """Queue a reconcile for the worker (it may take minutes) and come back to the page."""
        _, created = await request_reconcile(db_session, ctx.env_ref)
        flash(
            request,
            "Reconcile queued: its report appears here when it is done."
            if created
            else "A reconcile of this environment is already under way: its report appears here when it is done.",
        )
        return redirect(request, ctx.url("/admin/sync"))

    @get("/reconcile/{ref:str}")
    async def reconcile_run(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        """One run's block: what a page waiting for the run polls every 2 s."""
        run = await get_run(db_session, ctx.env_ref, ref)
        context = {"ctx": ctx, "run": run, "paths": ADMIN_PATHS, "type_labels": TYPE_LABELS}
        return render(request, "admin/sync/_reconcile.html", context)

    @get("/{entity_type:str}/{ref:str}/status")
    async def status(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        entity_type: str,
        ref: str,
        next: str | None = None,
    ) -> Response[str]:
        """One entity's status block, for a page waiting on the sync (htmx polls it)."""
        badges = await sync_badges(request, db_session, ctx, entity_type, [ref])
        context = {"ctx": ctx, "entity_type": entity_type, "ref": ref, "badges": badges}
        return render(
            request, "admin/sync/_status.html", {**context, "back": safe_next(next) if next else None}
        )

    @post("/{entity_type:str}/{ref:str}/retry")
    async def retry(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        settings: Settings,
        entity_type: str,
        ref: str,
    ) -> Response[str]:
        form = await request.form()
        before = await sync_badges(request, db_session, ctx, entity_type, [ref])
        state = await retry_sync(db_session, settings, ctx.env_ref, entity_type, ref)
        previous = before.get(ref)
        again = "be checked again" if previous and previous.status is SyncStatus.NOT_SYNCED else "sync again"
        flash(request, f"{TYPE_LABELS[entity_type]} {state.entity_id} is queued to {again}.")
        back = text(form, "next")
        default = ctx.url(f"/admin/{ADMIN_PATHS[entity_type]}/{quote(ref, safe='')}")
        return redirect(request, safe_next(back) if back else default)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        settings: Settings,
        entity_type: str | None,
        status: str | None,
        after: str | None,
    ) -> Response[str]:
        page = await list_sync_states(
            db_session,
            settings,
            ctx.env_ref,
            entity_type=entity_type or None,
            status=status or None,
            limit=PAGE_SIZE,
            starting_after=after or None,
            order="attention",
        )
        return render(
            request,
            "admin/sync/page.html",
            {
                "ctx": ctx,
                "section": "sync",
                "page": page,
                "connected": await stripe_connected(db_session, ctx.env_ref),
                "entity_type": entity_type or "",
                "status": status or "",
                "types": [(t, TYPE_LABELS[t]) for t in MODELS],
                "statuses": [(s.value, s.value) for s in SyncStatus],
                "paths": ADMIN_PATHS,
                "type_labels": TYPE_LABELS,
                "run": await latest_run(db_session, ctx.env_ref),
            },
        )
