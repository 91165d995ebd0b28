"""Environments: the switcher's list, and creating one (its keys are shown once)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import SESSION_ENV, AdminContext
from app.admin.forms import text
from app.admin.rendering import render
from app.core.errors import TollgateError
from app.environments.service import create_environment


class EnvironmentController(Controller):
    path = "/environments"

    @get("/")
    async def index(self, request: Request[Any, Any, Any], base_context: AdminContext) -> Response[str]:
        return render(
            request, "admin/environments/list.html", {"ctx": base_context, "section": "environments"}
        )

    @get("/_new")
    async def new(self, request: Request[Any, Any, Any], base_context: AdminContext) -> Response[str]:
        return render(
            request,
            "admin/environments/new.html",
            {
                "ctx": base_context,
                "section": "environments",
                "values": {"slug": "", "name": ""},
                "errors": {},
            },
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], base_context: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        form = await request.form()
        values = {"slug": text(form, "slug") or "", "name": text(form, "name") or ""}
        try:
            created = await create_environment(db_session, values["slug"], values["name"] or None)
        except TollgateError as exc:
            await db_session.rollback()
            return render(
                request,
                "admin/environments/new.html",
                {
                    "ctx": base_context,
                    "section": "environments",
                    "values": values,
                    "errors": {"slug": exc.message},
                },
                status_code=422,
            )
        request.session[SESSION_ENV] = created.environment_id
        # Shown on this response only: the server key is stored hashed and cannot be shown again.
        return render(
            request,
            "admin/environments/created.html",
            {"ctx": base_context, "section": "environments", "created": created},
            status_code=201,
        )
