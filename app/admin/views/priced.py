"""Plans and add-ons: entitlements, charges per billing period, price versions, publish, archive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import catalog_forms as cf
from app.admin.context import AdminContext, flash
from app.admin.forms import Errors, convert
from app.admin.queries import choices
from app.admin.rendering import redirect, render
from app.admin.views.catalog import archive_and_return, render_list, save
from app.admin.views.sync import SYNCED_SECTIONS, sync_badges
from app.catalog import schemas as s
from app.catalog import service


async def form_choices(db_session: AsyncSession, ctx: AdminContext, kind: str) -> dict[str, Any]:
    """What the selects of a plan or add-on form offer, all from this environment."""
    env = ctx.env_ref
    found = {
        "products": await choices(db_session, env, "products"),
        "features": await choices(db_session, env, "features"),
    }
    if kind == "plans":
        found["addons"] = await choices(db_session, env, "addons")
        found["plans"] = await choices(db_session, env, "plans")
    return {"choices": found}


def spare_rows(form: Any) -> dict[str, int]:
    """Blank lines under the entitlements and charges; "Add a line" asks for one more without saving."""
    wanted = str(form.get("_add") or "")
    return {"entitlements": 1 + (wanted == "entitlements"), "charges": 1 + (wanted == "charges")}


async def _render_priced_form(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    db_session: AsyncSession,
    kind: str,
    *,
    values: dict[str, Any],
    errors: Errors,
    spare: dict[str, int] | None = None,
    status_code: int = 200,
    entity: Any = None,
    versions: list[s.PriceVersionOut] | None = None,
) -> Response[str]:
    return render(
        request,
        f"admin/{kind}/page.html" if entity is not None else f"admin/{kind}/form.html",
        {
            "ctx": ctx,
            "section": kind,
            "kind": kind,
            "values": values,
            "errors": errors,
            "spare": spare or {"entitlements": 1, "charges": 1},
            "entity": entity,
            "versions": versions or [],
            "badges": await sync_badges(request, db_session, ctx, SYNCED_SECTIONS[kind], [entity.id])
            if entity is not None
            else None,
            **(await form_choices(db_session, ctx, kind)),
        },
        status_code=status_code,
    )


@dataclass(frozen=True)
class Priced:
    """What differs between the plan and the add-on screens; the screens themselves are shared."""

    kind: str  # the console section: plans | addons
    label: str  # Plan | Add-on
    get: Callable[[AsyncSession, Any, str], Awaitable[Any]]
    create: Callable[[AsyncSession, Any, Any], Awaitable[Any]]
    update: Callable[[AsyncSession, Any, str, Any], Awaitable[Any]]
    publish: Callable[[AsyncSession, Any, str], Awaitable[Any]]
    archive: Callable[[AsyncSession, Any, str], Awaitable[Any]]
    values: Callable[..., dict[str, Any]]  # form values of an entity (or blank ones)
    data: Callable[..., Any]  # form values -> the service's create/update fields
    create_struct: type
    update_struct: type
    versions: Callable[[AsyncSession, Any, str], Awaitable[list[s.PriceVersionOut]]] | None = None


PLANS = Priced(
    "plans", "Plan", service.get_plan, service.create_plan, service.update_plan, service.publish_plan,
    service.archive_plan, cf.plan_values, cf.plan_data, s.PlanCreate, s.PlanUpdate,
    service.list_plan_price_versions,
)  # fmt: skip
ADDONS = Priced(
    "addons", "Add-on", service.get_addon, service.create_addon, service.update_addon, service.publish_addon,
    service.archive_addon, cf.addon_values, cf.addon_data, s.AddonCreate, s.AddonUpdate,
)  # fmt: skip


class _PricedController(Controller):
    priced: Priced

    async def _versions(
        self, db_session: AsyncSession, ctx: AdminContext, ref: str
    ) -> list[s.PriceVersionOut]:
        return (
            [] if self.priced.versions is None else await self.priced.versions(db_session, ctx.env_ref, ref)
        )

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        q: str | None = None,
        status: str | None = None,
        after: str | None = None,
    ) -> Response[str]:
        return await render_list(request, ctx, db_session, self.priced.kind, q, status, after)

    @get("/_new")
    async def new(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        return await _render_priced_form(
            request, ctx, db_session, self.priced.kind, values=self.priced.values(), errors={}
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        p = self.priced
        form = await request.form()
        values = cf.priced_values_from_form(form)
        if form.get("_add"):
            return await _render_priced_form(
                request, ctx, db_session, p.kind, values=values, errors={}, spare=spare_rows(form)
            )
        created, errors = await save(
            request,
            db_session,
            lambda errs: convert(p.data(values, errs, creating=True), p.create_struct),
            lambda data: p.create(db_session, ctx.env_ref, data),
        )
        if errors:
            return await _render_priced_form(
                request, ctx, db_session, p.kind, values=values, errors=errors, status_code=422
            )
        flash(request, f"{p.label} {created.id} created as a draft.")
        return redirect(request, ctx.url(f"/admin/{p.kind}/{created.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        entity = await self.priced.get(db_session, ctx.env_ref, ref)
        return await _render_priced_form(
            request, ctx, db_session, self.priced.kind, values=self.priced.values(entity), errors={},
            entity=entity, versions=await self._versions(db_session, ctx, ref),
        )  # fmt: skip

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        p = self.priced
        form = await request.form()
        values = cf.priced_values_from_form(form) | {"id": ref}
        current = await p.get(db_session, ctx.env_ref, ref)
        values["productId"] = current.product_id
        if form.get("_add"):
            return await _render_priced_form(
                request, ctx, db_session, p.kind, values=values, errors={}, spare=spare_rows(form),
                entity=current, versions=await self._versions(db_session, ctx, ref),
            )  # fmt: skip
        saved, errors = await save(
            request,
            db_session,
            lambda errs: convert(p.data(values, errs, creating=False), p.update_struct),
            lambda data: p.update(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            return await _render_priced_form(
                request, ctx, db_session, p.kind, values=values, errors=errors, status_code=422,
                entity=current, versions=await self._versions(db_session, ctx, ref),
            )  # fmt: skip
        flash(request, f"{p.label} saved (price version {saved.price_version or '—'}).")
        return redirect(request, ctx.url(f"/admin/{p.kind}/{ref}"))

    @post("/{ref:str}/publish")
    async def publish(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        p = self.priced
        return await archive_and_return(
            request, ctx, db_session, p.publish(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/{p.kind}/{ref}"), f"{p.label} published.",
        )  # fmt: skip

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        p = self.priced
        return await archive_and_return(
            request, ctx, db_session, p.archive(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/{p.kind}/{ref}"), f"{p.label} archived.",
        )  # fmt: skip


class PlanController(_PricedController):
    path = "/plans"
    priced = PLANS


class AddonController(_PricedController):
    path = "/addons"
    priced = ADDONS
