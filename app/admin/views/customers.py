"""Customers: list and search, a customer's page with billing information and coupon."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext, flash
from app.admin.forms import Errors, FormData, convert, text
from app.admin.queries import PAGE_SIZE, choices
from app.admin.rendering import redirect, render
from app.admin.views.catalog import save
from app.admin.views.subscriptions import (
    attempt,
    customer_section,
    fingerprint,
    provision_request,
    provision_values,
)
from app.admin.views.sync import sync_badges
from app.customers import service
from app.customers.schemas import CustomerOut, CustomerUpdate
from app.subscriptions import service as subscriptions
from app.subscriptions.schemas import PreviewResult

ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postalCode", "country")


def customer_values(form: FormData | None = None, customer: CustomerOut | None = None) -> dict[str, str]:
    names = (
        "name",
        "email",
        "currency",
        "couponId",
        "invoiceName",
        "phone",
        *(f"address.{f}" for f in ADDRESS_FIELDS),
    )
    if form is not None:
        return {n: text(form, n) or "" for n in names}
    assert customer is not None
    info = customer.billing_info
    address = info.address
    values = {
        "name": customer.name or "",
        "email": customer.email or "",
        "currency": (customer.currency or "").upper(),
        "couponId": customer.coupon_id or "",
        "invoiceName": info.invoice_name or "",
        "phone": info.phone or "",
    }
    for field, attr in zip(
        ADDRESS_FIELDS, ("line1", "line2", "city", "state", "postal_code", "country"), strict=True
    ):
        values[f"address.{field}"] = (getattr(address, attr) if address else None) or ""
    return values


def customer_data(values: dict[str, str], customer: CustomerOut) -> dict[str, Any]:
    address = {f: values[f"address.{f}"] for f in ADDRESS_FIELDS if values[f"address.{f}"]}
    if "country" in address:
        address["country"] = address["country"].upper()
    billing: dict[str, Any] = {
        "address": address or None,
        "invoiceName": values["invoiceName"] or None,
        "phone": values["phone"] or None,
        # Tax ids are not edited here yet: keep the ones the API set.
        "taxIds": [{"type": t.type, "value": t.value} for t in customer.billing_info.tax_ids],
    }
    return {
        "name": values["name"] or None,
        "email": values["email"] or None,
        "currency": values["currency"] or None,
        "couponId": values["couponId"] or None,
        "billingInfo": billing,
    }


def _field_of(param: str) -> str:
    """`billingInfo.address.city` (API path) -> `address.city` (form field)."""
    for prefix in ("billingInfo.",):
        if param.startswith(prefix):
            return param.removeprefix(prefix)
    return param


class CustomerController(Controller):
    path = "/customers"

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        q: str | None = None,
        after: str | None = None,
    ) -> Response[str]:
        page = await service.list_customers(
            db_session, ctx.env_ref, limit=PAGE_SIZE, starting_after=after, search=(q or "").strip() or None
        )
        return render(
            request,
            "admin/customers/list.html",
            {
                "ctx": ctx,
                "section": "customers",
                "kind": "customers",
                "page": page,
                "search": q or "",
                "badges": await sync_badges(request, db_session, ctx, "customer", [c.id for c in page.data]),
            },
        )

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        customer = await service.get_customer(db_session, ctx.env_ref, ref)
        return await self._page(request, ctx, db_session, customer, customer_values(customer=customer), {})

    @post("/{ref:str}")
    async def update(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        values = customer_values(await request.form())
        current = await service.get_customer(db_session, ctx.env_ref, ref)
        updated, errors = await save(
            request,
            db_session,
            lambda _: convert(customer_data(values, current), CustomerUpdate),
            lambda data: service.update_customer(db_session, ctx.env_ref, ref, data),
        )
        if errors:
            errors = {_field_of(k): v for k, v in errors.items()}
            return await self._page(request, ctx, db_session, current, values, errors, status_code=422)
        flash(request, "Customer saved.")
        return redirect(request, ctx.url(f"/admin/customers/{updated.id}"))

    @post("/{ref:str}/subscriptions")
    async def provision(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        """Intent `preview` shows what it would cost; only `confirm` provisions."""
        form = await request.form()
        values = provision_values(form)
        customer = await service.get_customer(db_session, ctx.env_ref, ref)
        confirm = form.get("intent") == "confirm" and form.get("previewed") == fingerprint(values)
        call = subscriptions.provision_subscription if confirm else subscriptions.preview_subscription
        result, errors = await attempt(
            db_session, lambda: call(db_session, ctx.env_ref.pk, provision_request(customer.id, values))
        )
        if errors or not confirm:
            return await self._page(
                request,
                ctx,
                db_session,
                customer,
                customer_values(customer=customer),
                {},
                status_code=422 if errors else 200,
                provision=values,
                provision_errors=errors,
                preview=result,
            )
        flash(request, f"Subscription {result.subscription.id} provisioned.")
        return redirect(request, ctx.url(f"/admin/customers/{customer.id}"))

    async def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        customer: CustomerOut,
        values: dict[str, str],
        errors: Errors,
        status_code: int = 200,
        provision: dict[str, Any] | None = None,
        provision_errors: Errors | None = None,
        preview: PreviewResult | None = None,
    ) -> Response[str]:
        section = await customer_section(db_session, ctx, customer)
        return render(
            request,
            "admin/customers/page.html",
            {
                "ctx": ctx,
                "section": "customers",
                "customer": customer,
                "values": values,
                "errors": errors,
                "coupons": await choices(db_session, ctx.env_ref, "coupons"),
                "provision": provision or provision_values(),
                "provision_errors": provision_errors or {},
                "preview": preview,
                "previewed": fingerprint(provision) if preview and provision else "",
                **section,
                "badges": await sync_badges(request, db_session, ctx, "customer", [customer.id]),
                "sub_badges": await sync_badges(
                    request, db_session, ctx, "subscription", [s.id for s in section["subscriptions"]]
                ),
            },
            status_code=status_code,
        )
