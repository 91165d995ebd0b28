"""Plans and add-ons: entitlements, charges per billing period, price versions, publish, archive."""

from __future__ import annotations

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


class PlanController(Controller):
    path = "/plans"

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
        return await render_list(request, ctx, db_session, "plans", q, status, after)

    @get("/_new")
    async def new(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        return await _render_priced_form(
            request, ctx, db_session, "plans", values=cf.plan_values(), errors={}
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        form = await request.form()
        values = cf.priced_values_from_form(form)
        if form.get("_add"):
            return await _render_priced_form(
                request, ctx, db_session, "plans", values=values, errors={}, spare=spare_rows(form)
            )
        plan, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.plan_data(values, errs, creating=True), s.PlanCreate),
            lambda data: service.create_plan(db_session, ctx.env_ref, data),
        )
        if errors:
            return await _render_priced_form(
                request, ctx, db_session, "plans", values=values, errors=errors, status_code=422
            )
        flash(request, f"Plan {plan.id} created as a draft.")
        return redirect(request, ctx.url(f"/admin/plans/{plan.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        plan = await service.get_plan(db_session, ctx.env_ref, ref)
        versions = await service.list_plan_price_versions(db_session, ctx.env_ref, ref)
        return await _render_priced_form(
            request,
            ctx,
            db_session,
            "plans",
            values=cf.plan_values(plan),
            errors={},
            entity=plan,
            versions=versions,
        )

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        form = await request.form()
        values = cf.priced_values_from_form(form) | {"id": ref}
        current = await service.get_plan(db_session, ctx.env_ref, ref)
        values["productId"] = current.product_id
        if form.get("_add"):
            versions = await service.list_plan_price_versions(db_session, ctx.env_ref, ref)
            return await _render_priced_form(
                request, ctx, db_session, "plans", values=values, errors={}, spare=spare_rows(form),
                entity=current, versions=versions,
            )  # fmt: skip
        plan, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.plan_data(values, errs, creating=False), s.PlanUpdate),
            lambda data: service.update_plan(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            versions = await service.list_plan_price_versions(db_session, ctx.env_ref, ref)
            return await _render_priced_form(
                request, ctx, db_session, "plans", values=values, errors=errors, status_code=422,
                entity=current, versions=versions,
            )  # fmt: skip
        flash(request, f"Plan saved (price version {plan.price_version or '—'}).")
        return redirect(request, ctx.url(f"/admin/plans/{ref}"))

    @post("/{ref:str}/publish")
    async def publish(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.publish_plan(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/plans/{ref}"), "Plan published.",
        )  # fmt: skip

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.archive_plan(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/plans/{ref}"), "Plan archived.",
        )  # fmt: skip


class AddonController(Controller):
    path = "/addons"

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
        return await render_list(request, ctx, db_session, "addons", q, status, after)

    @get("/_new")
    async def new(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        return await _render_priced_form(
            request, ctx, db_session, "addons", values=cf.addon_values(), errors={}
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        form = await request.form()
        values = cf.priced_values_from_form(form)
        if form.get("_add"):
            return await _render_priced_form(
                request, ctx, db_session, "addons", values=values, errors={}, spare=spare_rows(form)
            )
        addon, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.addon_data(values, errs, creating=True), s.AddonCreate),
            lambda data: service.create_addon(db_session, ctx.env_ref, data),
        )
        if errors:
            return await _render_priced_form(
                request, ctx, db_session, "addons", values=values, errors=errors, status_code=422
            )
        flash(request, f"Add-on {addon.id} created as a draft.")
        return redirect(request, ctx.url(f"/admin/addons/{addon.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        addon = await service.get_addon(db_session, ctx.env_ref, ref)
        return await _render_priced_form(
            request, ctx, db_session, "addons", values=cf.addon_values(addon), errors={}, entity=addon
        )

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        form = await request.form()
        values = cf.priced_values_from_form(form) | {"id": ref}
        current = await service.get_addon(db_session, ctx.env_ref, ref)
        values["productId"] = current.product_id
        if form.get("_add"):
            return await _render_priced_form(
                request,
                ctx,
                db_session,
                "addons",
                values=values,
                errors={},
                spare=spare_rows(form),
                entity=current,
            )
        addon, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.addon_data(values, errs, creating=False), s.AddonUpdate),
            lambda data: service.update_addon(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            return await _render_priced_form(
                request,
                ctx,
                db_session,
                "addons",
                values=values,
                errors=errors,
                status_code=422,
                entity=current,
            )
        flash(request, f"Add-on saved (price version {addon.price_version or '—'}).")
        return redirect(request, ctx.url(f"/admin/addons/{ref}"))

    @post("/{ref:str}/publish")
    async def publish(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.publish_addon(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/addons/{ref}"), "Add-on published.",
        )  # fmt: skip

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.archive_addon(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/addons/{ref}"), "Add-on archived.",
        )  # fmt: skip
