"""One function per widget request: check access, read, build the view model.

The routes parse the request into `WidgetParams`, call exactly one of these and render.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import BillingPeriod, Plan, PlanStatus, PricingType
from app.core.errors import InvalidRequest, NotFound, TollgateError, not_found
from app.settings import Settings
from app.widgets import queries, security, viewmodels
from app.widgets.appearance import texts_from_query, theme_css

_FRAME_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Query parameters a widget URL carries from one view to the next (period switch, change plan).
CARRIED = (
    "publishable-key",
    "customer-id",
    "customer-token",
    "product-id",
    "plan-id",
    "billing-period",
    "theme",
    "host-origin",
    "frame-id",
    "from",
)


@dataclass(frozen=True, slots=True)
class WidgetParams:
    publishable_key: str | None
    customer_id: str | None
    customer_token: str | None
    product_id: str | None
    plan_id: str | None
    billing_period: BillingPeriod | None
    theme: str
    host_origin: str | None
    frame_id: str | None
    texts: dict[str, str]
    theme_css: str
    carried: dict[str, str] = field(default_factory=dict)  # everything to rebuild a widget URL

    def url(self, path: str, **overrides: str | None) -> str:
        values = dict(self.carried)
        for key, value in overrides.items():
            name = key.replace("_", "-")
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        return f"{path}?{urlencode(values)}" if values else path

    def hidden_fields(self) -> dict[str, str]:
        """What a POST from the frame re-sends so the server can check access again."""
        keep = ("publishable-key", "customer-id", "customer-token", "host-origin", "frame-id", "product-id")
        return {k: v for k, v in self.carried.items() if k in keep}


def parse_params(query: Mapping[str, str]) -> WidgetParams:
    def text(name: str, limit: int = 300) -> str | None:
        value = (query.get(name) or "").strip()
        return value[:limit] if value else None

    frame_id = text("frame-id", 40)
    carried = {k: query[k] for k in CARRIED if query.get(k)}
    carried.update({k: v for k, v in query.items() if k.startswith(("t.", "c.")) and v})
    return WidgetParams(
        publishable_key=text("publishable-key"),
        customer_id=text("customer-id"),
        customer_token=text("customer-token"),
        product_id=text("product-id"),
        plan_id=text("plan-id"),
        billing_period=viewmodels.parse_period(query.get("billing-period")),
        theme="dark" if (query.get("theme") or "").strip().lower() == "dark" else "light",
        host_origin=text("host-origin"),
        frame_id=frame_id if frame_id and _FRAME_ID.match(frame_id) else None,
        texts=texts_from_query(query),
        theme_css=theme_css(query),
        carried=carried,
    )


async def frame_ancestors(session: AsyncSession, settings: Settings, params: WidgetParams) -> tuple[str, ...]:
    """For error pages: who may frame them, so the host can still show why it was refused.

    With no valid publishable key there is no list to consult; the page holds nothing but the
    reason and no control, so any page may frame it (`*`) and see that its key is wrong.
    """
    try:
        context = await security.environment_context(session, settings, params.publishable_key)
    except TollgateError:
        return ("*",)
    return context.frame_ancestors


@dataclass(frozen=True, slots=True)
class Page:
    access: security.WidgetAccess
    csrf: str
    view: Any


async def _access(
    session: AsyncSession, settings: Settings, params: WidgetParams, *, customer_required: bool
) -> security.WidgetAccess:
    return await security.check_access(
        session,
        settings,
        publishable_key=params.publishable_key,
        customer_id=params.customer_id,
        customer_token=params.customer_token,
        host_origin=params.host_origin,
        customer_required=customer_required,
    )


async def _customer_pk(session: AsyncSession, access: security.WidgetAccess) -> int | None:
    if access.customer_id is None:
        return None
    pk = await queries.customer_pk(session, access.environment.pk, access.customer_id)
    if pk is None:
        raise not_found("customer", access.customer_id)
    return pk


async def paywall_page(
    session: AsyncSession, settings: Settings, params: WidgetParams, now: dt.datetime
) -> Page:
    access = await _access(session, settings, params, customer_required=False)
    customer_pk = await _customer_pk(session, access)
    catalog = await queries.published_catalog(session, access.environment.pk, params.product_id)
    if catalog is None:
        raise (
            not_found("product", params.product_id)
            if params.product_id
            else NotFound(
                "This environment has no product with published plans yet.", code="no_published_plans"
            )
        )
    view = await viewmodels.paywall_view(
        session,
        catalog,
        requested_period=params.billing_period,
        customer_pk=customer_pk,
        texts=params.texts,
        now=now,
    )
    return Page(access, security.csrf_token(settings, access), view)


async def portal_page(
    session: AsyncSession, settings: Settings, params: WidgetParams, now: dt.datetime
) -> Page:
    access = await _access(session, settings, params, customer_required=True)
    customer_pk = await _customer_pk(session, access)
    assert customer_pk is not None
    view = await viewmodels.portal_view(
        session, customer_pk=customer_pk, product_ref=params.product_id, texts=params.texts, now=now
    )
    return Page(access, security.csrf_token(settings, access), view)


@dataclass(frozen=True, slots=True)
class CheckoutView:
    plan_id: str
    plan_name: str
    product_name: str
    period: BillingPeriod
    price: viewmodels.PriceView
    trial_days: int | None
    addons: list[viewmodels.AddonView]


async def checkout_page(
    session: AsyncSession, settings: Settings, params: WidgetParams, now: dt.datetime
) -> Page:
    access = await _access(session, settings, params, customer_required=True)
    await _customer_pk(session, access)
    if not params.plan_id:
        raise InvalidRequest("The checkout widget needs a plan-id.", code="plan_required", param="plan-id")
    catalog = await queries.published_catalog(session, access.environment.pk, params.product_id)
    plan = next((p for p in catalog.plans if p.ref == params.plan_id), None) if catalog else None
    if catalog is None or plan is None:
        raise not_found("plan", params.plan_id)
    version = catalog.prices.get(plan.pk)
    periods = viewmodels.periods_of(version)
    period = params.billing_period or BillingPeriod.MONTHLY
    if periods and period not in periods:
        period = sorted(periods)[0]
    view = CheckoutView(
        plan_id=plan.ref,
        plan_name=plan.name,
        product_name=catalog.product.name,
        period=period,
        price=viewmodels.price_view(plan.pricing_type, version, period, params.texts),
        trial_days=plan.trial_days if plan.pricing_type is PricingType.PAID else None,
        addons=[
            viewmodels.AddonView(
                a.ref,
                a.name,
                a.description,
                viewmodels.price_view(a.pricing_type, catalog.addon_prices.get(a.pk), period, params.texts),
            )
            for a in plan.addons
            if a.status is PlanStatus.PUBLISHED
        ],
    )
    return Page(access, security.csrf_token(settings, access), view)


# ---- actions (POSTs from inside the frame) ---------------------------------------------------------


async def checked_action(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    csrf: str | None,
    origin: str | None,
    *,
    customer_required: bool,
) -> security.WidgetAccess:
    """Access and CSRF checks every widget POST goes through before it does anything."""
    access = await _access(session, settings, params, customer_required=customer_required)
    security.check_csrf(settings, access, csrf, origin)
    await _customer_pk(session, access)
    return access


async def select_plan(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    csrf: str | None,
    origin: str | None,
    action: str | None,
) -> dict[str, Any]:
    """Validate a plan choice and describe it for the host (`tollgate:plan-selected`)."""
    access = await checked_action(session, settings, params, csrf, origin, customer_required=False)
    if not params.plan_id:
        raise InvalidRequest("Which plan? plan-id is missing.", code="plan_required", param="plan-id")
    plan = await session.scalar(
        select(Plan).where(
            Plan.environment_pk == access.environment.pk,
            Plan.ref == params.plan_id,
            Plan.status == PlanStatus.PUBLISHED,
        )
    )
    if plan is None:
        raise not_found("plan", params.plan_id)
    # TODO(subscriptions merge): provision here through the subscriptions service (a free plan
    # or a trial at once; a paid plan answers with a Checkout URL sent as `tollgate:navigate`).
    # Until then the widget only tells the host app what was chosen; nothing is provisioned.
    period = params.billing_period or BillingPeriod.MONTHLY
    return {
        "planId": plan.ref,
        "planName": plan.name,
        "pricingType": plan.pricing_type.value,
        "billingPeriod": period.value,
        "action": action if action in _ACTIONS else "subscribe",
        "customerId": access.customer_id,
        "provisioned": False,
    }


_ACTIONS = {"subscribe", "start_trial", "upgrade", "downgrade", "switch_period", "contact"}
