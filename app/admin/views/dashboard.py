"""The console's home: what this environment holds."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext
from app.admin.queries import dashboard_counts
from app.admin.rendering import render
from app.core.errors import NotFound


@get("/", name="admin:dashboard")
async def dashboard(
    request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
) -> Response[str]:
    counts = await dashboard_counts(db_session, ctx.env_ref)
    return render(request, "admin/dashboard.html", {"ctx": ctx, "section": "dashboard", "counts": counts})


@get("/{rest:path}", name="admin:not-found")
async def not_found_page(rest: str) -> Response[str]:
    """Unknown console addresses answer with the console's 404 page, and only after sign-in."""
    raise NotFound("There is nothing at this address.", code="page_not_found")
