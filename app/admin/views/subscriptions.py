"""Subscriptions in the console: a customer's subscriptions, entitlements and usage; provision
(with a preview before confirming), change plan, cancel, cancel a scheduled change; and the
/admin/subscriptions/{id} page that Stripe metadata links to.

Every write goes through the subscriptions service. A form is first previewed (intent
`preview`); only the confirm button (intent `confirm`) changes anything.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext, flash
from app.admin.forms import Errors, FormData, FormInvalid, all_values, convert, service_errors, text
from app.admin.queries import choices, sellable
from app.admin.rendering import redirect, render
from app.admin.views.sync import sync_badges
from app.core.errors import TollgateError
from app.customers.schemas import CustomerOut
from app.subscriptions import entitlements
from app.subscriptions import service as subscriptions
from app.subscriptions.schemas import (
    CancelRequest,
    PreviewResult,
    ProvisionRequest,
    SubscriptionOut,
    UpdateRequest,
)

PERIODS = [("MONTHLY", "Monthly"), ("ANNUALLY", "Annually")]


def provision_values(form: FormData | None = None) -> dict[str, Any]:
    if form is None:
        return {"planId": "", "billingPeriod": "MONTHLY", "couponId": "", "addons": {}, "unitQuantities": ""}
    addons = {ref: text(form, f"addonQuantity.{ref}") or "1" for ref in all_values(form, "addonIds")}
    return {
        "planId": text(form, "planId") or "",
        "billingPeriod": text(form, "billingPeriod") or "MONTHLY",
        "couponId": text(form, "couponId") or "",
        "addons": addons,
        "unitQuantities": text(form, "unitQuantities") or "",
    }


def fingerprint(values: dict[str, Any]) -> str:
    """What was previewed: a confirm of other values (edited after the preview) previews again."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def _quantities(raw: str) -> list[dict[str, Any]]:
    """`seats=5, projects=2` -> unit quantities; a malformed pair is an error on that field."""
    result = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        feature, _, quantity = part.partition("=")
        if not feature.strip() or not quantity.strip().isdigit():
            raise FormInvalid({"unitQuantities": "Write feature=quantity pairs, e.g. seats=5."})
        result.append({"featureId": feature.strip(), "quantity": int(quantity)})
    return result


def provision_request(customer_id: str, values: dict[str, Any]) -> ProvisionRequest:
    addons = []
    for ref, quantity in values["addons"].items():
        if not str(quantity).isdigit():
            raise FormInvalid({"addons": "Add-on quantities are whole numbers."})
        addons.append({"addonId": ref, "quantity": int(quantity)})
    return convert(
        {
            "customerId": customer_id,
            "planId": values["planId"],
            "billingPeriod": values["billingPeriod"],
            "addons": addons,
            "unitQuantities": _quantities(values["unitQuantities"]),
            "couponId": values["couponId"] or None,
        },
        ProvisionRequest,
    )


def field_errors(errors: Errors) -> Errors:
    """`addons[0].addonId` -> `addons`: the form has one control per list."""
    result: Errors = {}
    for name, message in errors.items():
        for group in ("addons", "unitQuantities"):
            if name.startswith(group):
                name = group
        if name == "customerId":
            name = "_form"
        result.setdefault(name, message)
    return result


async def attempt(db_session: AsyncSession, call: Any) -> tuple[Any, Errors]:
    """Run a service call; on refusal roll back (nothing changed) and return field errors."""
    try:
        return await call(), {}
    except FormInvalid as exc:
        return None, field_errors(exc.errors)
    except TollgateError as exc:
        await db_session.rollback()
        return None, field_errors(service_errors(exc))


async def customer_section(
    db_session: AsyncSession, ctx: AdminContext, customer: CustomerOut
) -> dict[str, Any]:
    """What the customer page shows about subscriptions: the rows, entitlements with usage, choices."""
    page = await subscriptions.list_subscriptions(
        db_session, ctx.env_ref.pk, customer_ref=customer.id, limit=100
    )
    return {
        "subscriptions": page.data,
        "entitlements": await entitlements.list_entitlements(db_session, ctx.env_ref.pk, customer.id),
        "plan_names": dict(await choices(db_session, ctx.env_ref, "plans")),
        "plan_choices": await sellable(db_session, ctx.env_ref, "plans"),
        "addon_choices": await sellable(db_session, ctx.env_ref, "addons"),
        "coupon_choices": await choices(db_session, ctx.env_ref, "coupons"),
        "periods": PERIODS,
    }


class SubscriptionController(Controller):
    path = "/subscriptions"

    @get("/{ref:str}")
    async def page(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        sub = await subscriptions.get_subscription(db_session, ctx.env_ref.pk, ref)
        return await self._page(request, ctx, db_session, sub, {"planId": sub.plan_id}, {}, None)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        sub: SubscriptionOut,
        values: dict[str, str],
        errors: Errors,
        preview: PreviewResult | None,
        status_code: int = 200,
    ) -> Response[str]:
        values = {"billingPeriod": sub.billing_period.value, **values}
        return render(
            request,
            "admin/subscriptions/page.html",
            {
                "ctx": ctx,
                "section": "customers",
                "sub": sub,
                "plan_names": dict(await choices(db_session, ctx.env_ref, "plans")),
                "plan_choices": await sellable(db_session, ctx.env_ref, "plans"),
                "periods": PERIODS,
                "values": values,
                "errors": errors,
                "preview": preview,
                "previewed": fingerprint(values) if preview else "",
                "badges": await sync_badges(request, db_session, ctx, "subscription", [sub.id]),
            },
            status_code=status_code,
        )

    @post("/{ref:str}/change")
    async def change(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        form = await request.form()
        sub = await subscriptions.get_subscription(db_session, ctx.env_ref.pk, ref)
        values = {
            "planId": text(form, "planId") or "",
            "billingPeriod": text(form, "billingPeriod") or sub.billing_period.value,
        }
        if form.get("intent") != "confirm" or form.get("previewed") != fingerprint(values):
            request_ = {
                "customerId": sub.customer_id,
                "planId": values["planId"],
                "billingPeriod": values["billingPeriod"],
                "addons": [{"addonId": a.addon_id, "quantity": a.quantity} for a in sub.addons],
                "unitQuantities": [
                    {"featureId": u.feature_id, "quantity": u.quantity} for u in sub.unit_quantities
                ],
            }
            preview, errors = await attempt(
                db_session,
                lambda: subscriptions.preview_subscription(
                    db_session, ctx.env_ref.pk, convert(request_, ProvisionRequest)
                ),
            )
            return await self._page(
                request, ctx, db_session, sub, values, errors, preview, status_code=422 if errors else 200
            )
        result, errors = await attempt(
            db_session,
            lambda: subscriptions.update_subscription(
                db_session, ctx.env_ref.pk, ref, convert(values, UpdateRequest)
            ),
        )
        if errors:
            return await self._page(request, ctx, db_session, sub, values, errors, None, status_code=422)
        flash(
            request, "Plan changed." if result.status == "SUCCESS" else "Change scheduled for the period end."
        )
        return redirect(request, ctx.url(f"/admin/subscriptions/{quote(ref, safe='')}"))

    @post("/{ref:str}/cancel")
    async def cancel(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        form = await request.form()
        when = "IMMEDIATE" if form.get("cancellationTime") == "IMMEDIATE" else "END_OF_BILLING_PERIOD"
        back = _back(ctx, form, ref)
        try:
            await subscriptions.cancel_subscription(
                db_session, ctx.env_ref.pk, ref, CancelRequest(cancellation_time=when)
            )
        except TollgateError as exc:
            await db_session.rollback()
            flash(request, exc.message, error=True)
            return redirect(request, back)
        flash(
            request,
            "Subscription canceled." if when == "IMMEDIATE" else "Cancellation scheduled for the period end.",
        )
        return redirect(request, back)

    @post("/{ref:str}/cancel-scheduled-change")
    async def cancel_scheduled_change(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, ref: str
    ) -> Response[str]:
        form = await request.form()
        back = _back(ctx, form, ref)
        try:
            await subscriptions.cancel_scheduled_change(db_session, ctx.env_ref.pk, ref)
        except TollgateError as exc:
            await db_session.rollback()
            flash(request, exc.message, error=True)
            return redirect(request, back)
        flash(request, "Scheduled change canceled.")
        return redirect(request, back)


def _back(ctx: AdminContext, form: FormData, ref: str) -> str:
    """Where an action returns: the customer page it came from, else the subscription's page."""
    customer = text(form, "customerId")
    if customer:
        return ctx.url(f"/admin/customers/{quote(customer, safe='')}")
    return ctx.url(f"/admin/subscriptions/{quote(ref, safe='')}")
