"""Features, products and coupons: list and search, create, edit, archive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class FeatureController(Controller):
    path = "/features"

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
        return await render_list(request, ctx, db_session, "features", q, status, after)

    @get("/_new")
    async def new(self, request: Request[Any, Any, Any], ctx: AdminContext) -> Response[str]:
        return render_form(
            request,
            ctx,
            "admin/features/form.html",
            section="features",
            values=cf.feature_values(),
            errors={},
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        values = cf.feature_values(await request.form())
        feature, errors = await save(
            request,
            db_session,
            lambda _: convert(cf.feature_data(values, creating=True), s.FeatureCreate),
            lambda data: service.create_feature(db_session, ctx.env_ref, data),
        )
        if errors:
            return render_form(
                request,
                ctx,
                "admin/features/form.html",
                section="features",
                values=values,
                errors=errors,
                status_code=422,
            )
        flash(request, f"Feature {feature.id} created.")
        return redirect(request, ctx.url(f"/admin/features/{feature.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        feature = await service.get_feature(db_session, ctx.env_ref, ref)
        return render_form(
            request, ctx, "admin/features/page.html", section="features",
            values=cf.feature_values(feature=feature), errors={}, feature=feature,
        )  # fmt: skip

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        values = cf.feature_values(await request.form())
        feature, errors = await save(
            request,
            db_session,
            lambda _: convert(cf.feature_data(values, creating=False), s.FeatureUpdate),
            lambda data: service.update_feature(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            current = await service.get_feature(db_session, ctx.env_ref, ref)
            return render_form(
                request, ctx, "admin/features/page.html", section="features",
                values=values | {"id": ref}, errors=errors, feature=current, status_code=422,
            )  # fmt: skip
        flash(request, "Feature saved.")
        return redirect(request, ctx.url(f"/admin/features/{feature.id}"))

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.archive_feature(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/features/{ref}"), "Feature archived.",
        )  # fmt: skip


class ProductController(Controller):
    path = "/products"

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
        return await render_list(request, ctx, db_session, "products", q, status, after)

    @get("/_new")
    async def new(self, request: Request[Any, Any, Any], ctx: AdminContext) -> Response[str]:
        return render_form(
            request,
            ctx,
            "admin/products/form.html",
            section="products",
            values=cf.product_values(),
            errors={},
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        values = cf.product_values(await request.form())
        product, errors = await save(
            request,
            db_session,
            lambda _: convert(cf.product_data(values, creating=True), s.ProductCreate),
            lambda data: service.create_product(db_session, ctx.env_ref, data),
        )
        if errors:
            return render_form(
                request,
                ctx,
                "admin/products/form.html",
                section="products",
                values=values,
                errors=errors,
                status_code=422,
            )
        flash(request, f"Product {product.id} created.")
        return redirect(request, ctx.url(f"/admin/products/{product.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        product = await service.get_product(db_session, ctx.env_ref, ref)
        return render_form(
            request, ctx, "admin/products/page.html", section="products",
            values=cf.product_values(product=product), errors={}, product=product,
        )  # fmt: skip

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        values = cf.product_values(await request.form())
        product, errors = await save(
            request,
            db_session,
            lambda _: convert(cf.product_data(values, creating=False), s.ProductUpdate),
            lambda data: service.update_product(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            current = await service.get_product(db_session, ctx.env_ref, ref)
            return render_form(
                request, ctx, "admin/products/page.html", section="products",
                values=values | {"id": ref}, errors=errors, product=current, status_code=422,
            )  # fmt: skip
        flash(request, "Product saved.")
        return redirect(request, ctx.url(f"/admin/products/{product.id}"))

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.archive_product(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/products/{ref}"), "Product archived.",
        )  # fmt: skip


class CouponController(Controller):
    path = "/coupons"

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
        return await render_list(request, ctx, db_session, "coupons", q, status, after)

    @get("/_new")
    async def new(self, request: Request[Any, Any, Any], ctx: AdminContext) -> Response[str]:
        return render_form(
            request, ctx, "admin/coupons/form.html", section="coupons", values=cf.coupon_values(), errors={}
        )

    @post("/_new")
    async def create(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession
    ) -> Response[str]:
        values = cf.coupon_values(await request.form())
        coupon, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.coupon_data(values, errs, creating=True), s.CouponCreate),
            lambda data: service.create_coupon(db_session, ctx.env_ref, data),
        )
        if errors:
            return render_form(
                request,
                ctx,
                "admin/coupons/form.html",
                section="coupons",
                values=values,
                errors=errors,
                status_code=422,
            )
        flash(request, f"Coupon {coupon.id} created.")
        return redirect(request, ctx.url(f"/admin/coupons/{coupon.id}"))

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        coupon = await service.get_coupon(db_session, ctx.env_ref, ref)
        return render_form(
            request, ctx, "admin/coupons/page.html", section="coupons",
            values=cf.coupon_values(coupon=coupon), errors={}, coupon=coupon,
            badges=await sync_badges(request, db_session, ctx, "coupon", [ref]),
        )  # fmt: skip

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        values = cf.coupon_values(await request.form())
        coupon, errors = await save(
            request,
            db_session,
            lambda errs: convert(cf.coupon_data(values, errs, creating=False), s.CouponUpdate),
            lambda data: service.update_coupon(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            current = await service.get_coupon(db_session, ctx.env_ref, ref)
            return render_form(
                request, ctx, "admin/coupons/page.html", section="coupons",
                values=cf.coupon_values(coupon=current) | {"name": values["name"], "description": values["description"]},
                errors=errors, coupon=current, status_code=422,
                badges=await sync_badges(request, db_session, ctx, "coupon", [ref]),
            )  # fmt: skip
        flash(request, "Coupon saved.")
        return redirect(request, ctx.url(f"/admin/coupons/{coupon.id}"))

    @post("/{ref:str}/archive")
    async def archive(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        return await archive_and_return(
            request, ctx, db_session, service.archive_coupon(db_session, ctx.env_ref, ref),
            ctx.url(f"/admin/coupons/{ref}"), "Coupon archived.",
        )  # fmt: skip
