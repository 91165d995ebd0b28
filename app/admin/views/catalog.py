"""Features, products and coupons: list and search, create, edit, archive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import catalog_forms as cf
from app.admin.context import AdminContext, flash
from app.admin.forms import Errors, FormInvalid, convert, service_errors
from app.admin.queries import list_catalog
from app.admin.rendering import redirect, render
from app.admin.views.sync import SYNCED_SECTIONS, sync_badges
from app.catalog import schemas as s
from app.catalog import service
from app.core.errors import TollgateError

LIST_TITLES = {
    "features": ("Features", "feature"),
    "products": ("Products", "product"),
    "plans": ("Plans", "plan"),
    "addons": ("Add-ons", "add-on"),
    "coupons": ("Coupons", "coupon"),
}


async def render_list(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    db_session: AsyncSession,
    kind: str,
    q: str | None,
    status: str | None,
    after: str | None,
) -> Response[str]:
    page = await list_catalog(db_session, ctx.env_ref, kind, search=q, status=status, after=after)
    synced = SYNCED_SECTIONS.get(kind)
    badges = (
        await sync_badges(request, db_session, ctx, synced, [r.ref for r in page.rows]) if synced else None
    )
    title, noun = LIST_TITLES[kind]
    statuses = ["DRAFT", "PUBLISHED", "ARCHIVED"] if kind in ("plans", "addons") else ["ACTIVE", "ARCHIVED"]
    return render(
        request,
        "admin/list.html",
        {
            "ctx": ctx,
            "section": kind,
            "kind": kind,
            "page": page,
            "title": title,
            "noun": noun,
            "statuses": statuses,
            "entity_type": synced,
            "badges": badges,
        },
    )


def render_form(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    template: str,
    *,
    section: str,
    values: dict[str, Any],
    errors: Errors,
    status_code: int = 200,
    **extra: Any,
) -> Response[str]:
    return render(
        request,
        template,
        {"ctx": ctx, "section": section, "values": values, "errors": errors, **extra},
        status_code=status_code,
    )


async def save(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    build: Callable[[Errors], Any],
    call: Callable[[Any], Awaitable[Any]],
) -> tuple[Any, Errors]:
    """Build the API input from the form, call the service; (result, {}) or (None, field errors).

    A refused change is rolled back here: the request's transaction would otherwise commit
    whatever the service had flushed before it refused.
    """
    errors: Errors = {}
    try:
        data = build(errors)
        if errors:
            return None, errors
        return await call(data), {}
    except FormInvalid as exc:
        return None, exc.errors
    except TollgateError as exc:
        await db_session.rollback()
        return None, service_errors(exc)


async def archive_and_return(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    db_session: AsyncSession,
    call: Awaitable[Any],
    url: str,
    done: str,
) -> Response[str]:
    try:
        await call
    except TollgateError as exc:
        await db_session.rollback()
        flash(request, exc.message, error=True)
        return redirect(request, url)
    flash(request, done)
    return redirect(request, url)


def _kept_values(values: dict[str, Any], current: Any, ref: str) -> dict[str, Any]:
    return values | {"id": ref}


def _coupon_kept_values(values: dict[str, Any], current: Any, ref: str) -> dict[str, Any]:
    # Only a coupon's name and description change after creation; the rest shows as it is.
    return cf.coupon_values(coupon=current) | {"name": values["name"], "description": values["description"]}


@dataclass(frozen=True)
class Simple:
    """What differs between the feature, product and coupon screens; the screens are shared."""

    kind: str  # the console section: features | products | coupons
    noun: str  # the entity's name in templates: feature | product | coupon
    label: str  # Feature | Product | Coupon
    get: Callable[[AsyncSession, Any, str], Awaitable[Any]]
    create: Callable[[AsyncSession, Any, Any], Awaitable[Any]]
    update: Callable[[AsyncSession, Any, str, Any], Awaitable[Any]]
    archive: Callable[[AsyncSession, Any, str], Awaitable[Any]]
    values: Callable[..., dict[str, Any]]  # (form=None, <noun>=None) -> form values
    data: Callable[[dict[str, Any], Errors, bool], Any]  # (values, errors, creating) -> fields
    create_struct: type
    update_struct: type
    kept_values: Callable[[dict[str, Any], Any, str], dict[str, Any]] = _kept_values
    synced: str | None = None  # the sync entity type, when it reaches Stripe


FEATURES = Simple(
    "features", "feature", "Feature", service.get_feature, service.create_feature, service.update_feature,
    service.archive_feature, cf.feature_values, lambda v, _e, c: cf.feature_data(v, creating=c),
    s.FeatureCreate, s.FeatureUpdate,
)  # fmt: skip
PRODUCTS = Simple(
    "products", "product", "Product", service.get_product, service.create_product, service.update_product,
    service.archive_product, cf.product_values, lambda v, _e, c: cf.product_data(v, creating=c),
    s.ProductCreate, s.ProductUpdate,
)  # fmt: skip
COUPONS = Simple(
    "coupons", "coupon", "Coupon", service.get_coupon, service.create_coupon, service.update_coupon,
    service.archive_coupon, cf.coupon_values, lambda v, e, c: cf.coupon_data(v, e, creating=c),
    s.CouponCreate, s.CouponUpdate, _coupon_kept_values, synced="coupon",
)  # fmt: skip


class _SimpleController(Controller):
    simple: Simple

    async def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        entity: Any,
        values: dict[str, Any],
        errors: Errors,
        status_code: int = 200,
    ) -> Response[str]:
        m = self.simple
        badges = await sync_badges(request, db_session, ctx, m.synced, [entity.id]) if m.synced else None
        return render_form(
            request, ctx, f"admin/{m.kind}/page.html", section=m.kind, values=values, errors=errors,
            status_code=status_code, badges=badges, **{m.noun: entity},
        )  # fmt: skip

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
        return await render_list(request, ctx, db_session, self.simple.kind, q, status, after)

    @get("/_new")
    async def new(self, request: Request[Any, Any, Any], ctx: AdminContext) -> Response[str]:
        m = self.simple
        return render_form(
            request, ctx, f"admin/{m.kind}/form.html", section=m.kind, values=m.values(), errors={}
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        m = self.simple
        values = m.values(await request.form())
        created, errors = await save(
            request,
            db_session,
            lambda errs: convert(m.data(values, errs, True), m.create_struct),
            lambda data: m.create(db_session, ctx.env_ref, data),
        )
        if errors:
            return render_form(
                request, ctx, f"admin/{m.kind}/form.html", section=m.kind, values=values, errors=errors,
                status_code=422,
            )  # fmt: skip
        flash(request, f"{m.label} {created.id} created.")
        return redirect(request, ctx.url(f"/admin/{m.kind}/{created.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        m = self.simple
        entity = await m.get(db_session, ctx.env_ref, ref)
        return await self._page(request, ctx, db_session, entity, m.values(**{m.noun: entity}), {})

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        m = self.simple
        values = m.values(await request.form())
        saved, errors = await save(
            request,
            db_session,
            lambda errs: convert(m.data(values, errs, False), m.update_struct),
            lambda data: m.update(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            current = await m.get(db_session, ctx.env_ref, ref)
            return await self._page(
                request, ctx, db_session, current, m.kept_values(values, current, ref), errors, 422
            )
        flash(request, f"{m.label} saved.")
        return redirect(request, ctx.url(f"/admin/{m.kind}/{saved.id}"))

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        m = self.simple
        return await archive_and_return(
            request, ctx, db_session, m.archive(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/{m.kind}/{ref}"), f"{m.label} archived.",
        )  # fmt: skip


class FeatureController(_SimpleController):
    path = "/features"
    simple = FEATURES


class ProductController(_SimpleController):
    path = "/products"
    simple = PRODUCTS


class CouponController(_SimpleController):
    path = "/coupons"
    simple = COUPONS
