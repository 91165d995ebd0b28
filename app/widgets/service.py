"""One function per widget request: check access, read, build the view model.

The routes parse the request into `WidgetParams`, call exactly one of these and render.
"""

from __future__ import annotations

import dataclasses
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
from app.core.money import format_amount
from app.settings import Settings
from app.subscriptions.models import SubscriptionStatus
from app.subscriptions.schemas import AddonInput, PreviewResult, ProvisionRequest, UnitQuantityInput
from app.widgets import billing, queries, security, subscribing, viewmodels
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
    "host-url",
    "frame-id",
    "from",
)
# The answer of a Checkout the host page came back from (tollgate.js reads its URL's marker).
CHECKOUT_RESULTS = ("success", "cancel")


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
    host_url: str | None = None  # the embedding page: where Stripe's pages send the customer back
    checkout_result: str | None = None  # success | cancel, once, on the page Checkout returned to
    checkout_subscription: str | None = None

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
        keep = (
            "publishable-key",
            "customer-id",
            "customer-token",
            "host-origin",
            "host-url",
            "frame-id",
            "product-id",
        )
        return {k: v for k, v in self.carried.items() if k in keep}


def parse_params(query: Mapping[str, str]) -> WidgetParams:
    def text(name: str, limit: int = 300) -> str | None:
        value = (query.get(name) or "").strip()
        return value[:limit] if value else None

    frame_id = text("frame-id", 40)
    result = text("checkout-result", 10)
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
        host_url=text("host-url", 2001),
        checkout_result=result if result in CHECKOUT_RESULTS else None,
        checkout_subscription=text("checkout-subscription", 100),
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
class CheckoutNotice:
    """What the host page learns on coming back from Checkout: shown in the frame, sent as
    `tollgate:checkout-completed`."""

    text: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    access: security.WidgetAccess
    csrf: str
    view: Any
    notice: CheckoutNotice | None = None
    can_manage_billing: bool = False  # billed in Stripe, through a connected integration


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
        change_types=lambda plans, period: _change_types(session, access, catalog, plans, period, now),
    )
    notice = await _checkout_notice(session, access, customer_pk, params)
    return Page(access, security.csrf_token(settings, access), view, notice)


async def _change_types(
    session: AsyncSession,
    access: security.WidgetAccess,
    catalog: queries.Catalog,
    plans: list[Plan],
    period: BillingPeriod,
    now: dt.datetime,
) -> dict[int, str]:
    """What choosing each plan would be for this customer, by the subscriptions service's rules
    (one read of the customer's subscription for the whole paywall, not a preview per plan)."""
    assert access.customer_id is not None
    offers = []
    for plan in plans:
        if plan.pricing_type is PricingType.CUSTOM:
            continue
        version = catalog.prices.get(plan.pk)
        offers.append((plan, version.pk if version else None, version.charges if version else []))
    return dict(
        await subscribing.change_types(
            session, access.environment.pk, access.customer_id, offers, period, now
        )
    )


async def portal_page(
    session: AsyncSession, settings: Settings, params: WidgetParams, now: dt.datetime
) -> Page:
    access = await _access(session, settings, params, customer_required=True)
    customer_pk = await _customer_pk(session, access)
    assert customer_pk is not None
    notice = await _checkout_notice(session, access, customer_pk, params)
    view = await viewmodels.portal_view(
        session, customer_pk=customer_pk, product_ref=params.product_id, texts=params.texts, now=now
    )
    billed = await billing.can_manage_billing(session, access.environment.pk, customer_pk)
    return Page(access, security.csrf_token(settings, access), view, notice, billed)


async def _checkout_notice(
    session: AsyncSession, access: security.WidgetAccess, customer_pk: int | None, params: WidgetParams
) -> CheckoutNotice | None:
    """The outcome of the Checkout this page came back from, for this customer's own subscription.

    Cancelled: the subscription that waited for the payment is ended now, so nothing changed.
    """
    if params.checkout_result is None or customer_pk is None or not params.checkout_subscription:
        return None
    try:
        ref = await subscribing.owned_subscription(
            session, access.environment.pk, customer_pk, params.checkout_subscription
        )
    except TollgateError:
        return None  # not this customer's: say nothing about it
    sub = await subscribing.current(session, access.environment.pk, ref)
    if params.checkout_result == "cancel" and sub.status is SubscriptionStatus.PAYMENT_PENDING:
        sub = await subscribing.cancel(session, access.environment.pk, ref, immediately=True)
    completed = params.checkout_result == "success" and sub.status in (
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.IN_TRIAL,
    )
    plan_name = await session.scalar(
        select(Plan.name).where(Plan.environment_pk == access.environment.pk, Plan.ref == sub.plan_id)
    )
    texts = params.texts
    if completed:
        text = texts["checkout_success"]
    elif params.checkout_result == "success":
        text = texts["checkout_pending"]
    else:
        text = texts["checkout_cancelled"]
    event = {**subscribing.event(sub), "completed": completed}
    return CheckoutNotice(text.replace("{plan}", plan_name or sub.plan_id), event)


@dataclass(frozen=True, slots=True)
class CheckoutView:
    plan_id: str
    plan_name: str
    product_name: str
    period: BillingPeriod
    price: viewmodels.PriceView
    trial_days: int | None
    addons: list[viewmodels.AddonView]
    periods: list[BillingPeriod] = field(default_factory=list)
    units: list[UnitView] = field(default_factory=list)
    summary: ConfirmView | None = None
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnitView:
    """A quantity the customer picks (seats of a per-seat price)."""

    feature_id: str
    label: str
    minimum: int
    maximum: int | None


def _compatible_addons(plan: Plan, plans: list[Plan]) -> list[Any]:
    """The plan's add-ons and those of its published ancestors (the service accepts both)."""
    by_pk = {p.pk: p for p in plans}
    found: dict[int, Any] = {}
    cursor: Plan | None = plan
    seen: set[int] = set()
    while cursor is not None and cursor.pk not in seen:
        seen.add(cursor.pk)
        for addon in cursor.addons:
            found.setdefault(addon.pk, addon)
        cursor = by_pk.get(cursor.parent_plan_pk) if cursor.parent_plan_pk else None
    return sorted(found.values(), key=lambda a: (a.display_order, a.pk))


async def checkout_page(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    now: dt.datetime,
    form: Mapping[str, str] | None = None,
) -> Page:
    access = await _access(session, settings, params, customer_required=True)
    customer_pk = await _customer_pk(session, access)
    notice = await _checkout_notice(session, access, customer_pk, params)
    if not params.plan_id:
        raise InvalidRequest("The checkout widget needs a plan-id.", code="plan_required", param="plan-id")
    catalog = await queries.published_catalog(session, access.environment.pk, params.product_id)
    plan = next((p for p in catalog.plans if p.ref == params.plan_id), None) if catalog else None
    if catalog is None or plan is None:
        raise not_found("plan", params.plan_id)
    version = catalog.prices.get(plan.pk)
    periods = viewmodels.periods_of(version)
    form = dict(form or {})
    period = (
        viewmodels.parse_period(form.get("billing-period")) or params.billing_period or BillingPeriod.MONTHLY
    )
    if periods and period not in periods:
        period = sorted(periods)[0]
    form["billing-period"] = viewmodels.PERIOD_SLUG[period]
    units = [
        UnitView(
            c.feature.ref,
            (c.feature.unit_plural or c.feature.name).capitalize(),
            max(1, c.min_quantity or 1),
            c.max_quantity,
        )
        for c in (version.charges if version else [])
        if c.billing_period is period
        and c.feature is not None
        and c.billing_model.value in ("PER_UNIT", "TIERED")
    ]
    for unit in units:
        form.setdefault(f"unit.{unit.feature_id}", str(unit.minimum))
    assert access.customer_id is not None
    try:
        preview = await subscribing.preview(
            session, access.environment.pk, checkout_request(access.customer_id, plan.ref, form), now
        )
        summary: ConfirmView | None = confirm_view(plan, "subscribe", preview)
    except TollgateError:
        summary = None  # the live summary (htmx) shows the reason once the customer edits
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
            for a in _compatible_addons(plan, catalog.plans)
            if a.status is PlanStatus.PUBLISHED
        ],
        periods=[p for p in (BillingPeriod.MONTHLY, BillingPeriod.ANNUALLY) if p in periods],
        units=units,
        summary=summary,
        values=form,
    )
    return Page(access, security.csrf_token(settings, access), view, notice)


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
    security.checked_host_url(access, params.host_url)  # refused before anything is created
    await _customer_pk(session, access)
    return access


@dataclass(frozen=True, slots=True)
class LineView:
    description: str
    amount: str


@dataclass(frozen=True, slots=True)
class ConfirmView:
    """The confirmation step of a paid plan or a downgrade: what it costs and when it applies."""

    plan_id: str
    plan_name: str
    period: BillingPeriod
    action: str
    change_type: str
    due_now: str
    next_total: str
    next_date: str
    effective_date: str
    scheduled: bool
    lines: list[LineView]
    to_payment: bool = False  # confirming sends the customer to Stripe Checkout


@dataclass(frozen=True, slots=True)
class ActionResult:
    """A widget action's answer: tell the host (`events`), then show `page` (or go to `navigate`)."""

    events: dict[str, Any] = field(default_factory=dict)
    page: Page | None = None
    navigate: str | None = None
    confirm: bool = False
    confirming: str | None = None  # the subscription whose cancellation is being confirmed


def _money(amount: int, currency: str | None) -> str:
    return format_amount(amount, currency) if currency else str(amount)


def confirm_view(plan: Plan, action: str, preview: PreviewResult) -> ConfirmView:
    currency = preview.currency
    lines = preview.lines_due_now or preview.recurring_lines
    return ConfirmView(
        plan_id=plan.ref,
        plan_name=plan.name,
        period=preview.billing_period,
        action=action,
        change_type=preview.change_type,
        due_now=_money(preview.amount_due_now, currency),
        next_total=_money(preview.next_recurring_total, currency),
        next_date=viewmodels.format_date(preview.next_billing_date),
        effective_date=viewmodels.format_date(preview.effective_at),
        scheduled=preview.change_type in ("DOWNGRADE", "BILLING_PERIOD_CHANGE"),
        lines=[LineView(line.description, _money(line.amount, currency)) for line in lines],
    )


async def _published_plan(session: AsyncSession, environment_pk: int, ref: str | None) -> Plan:
    if not ref:
        raise InvalidRequest("Which plan? plan-id is missing.", code="plan_required", param="plan-id")
    plan = await session.scalar(
        select(Plan).where(
            Plan.environment_pk == environment_pk, Plan.ref == ref, Plan.status == PlanStatus.PUBLISHED
        )
    )
    if plan is None:
        raise not_found("plan", ref)
    return plan


async def select_plan(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    csrf: str | None,
    origin: str | None,
    action: str | None,
    *,
    confirmed: bool,
    now: dt.datetime,
) -> ActionResult:
    """A plan chosen on the paywall, by the subscriptions rules.

    A free plan or a trial starts at once; a paid plan or a downgrade first answers with a
    confirmation showing the preview; a custom plan (or a visitor with no customer) is only
    described to the host (`tollgate:plan-selected`).
    """
    access = await checked_action(session, settings, params, csrf, origin, customer_required=False)
    plan = await _published_plan(session, access.environment.pk, params.plan_id)
    period = params.billing_period or BillingPeriod.MONTHLY
    action = action if action in _ACTIONS else "subscribe"
    if plan.pricing_type is PricingType.CUSTOM or access.customer_id is None:
        detail = {
            "planId": plan.ref,
            "planName": plan.name,
            "pricingType": plan.pricing_type.value,
            "billingPeriod": period.value,
            "action": action,
            "customerId": access.customer_id,
            "provisioned": False,
        }
        return ActionResult(events={"tollgate:plan-selected": detail})
    request = ProvisionRequest(customer_id=access.customer_id, plan_id=plan.ref, billing_period=period)
    preview = await subscribing.preview(session, access.environment.pk, request, now)
    at_once = (
        preview.trial_end is not None
        or preview.change_type == "NO_CHANGE"
        or (preview.change_type == "NEW" and plan.pricing_type is PricingType.FREE)
    )
    if not at_once and not confirmed:
        view = confirm_view(plan, action, preview)
        if preview.payment_first:
            view = dataclasses.replace(view, to_payment=True)
        elif preview.change_type == "NEW" and plan.pricing_type is PricingType.PAID:
            to_payment = await billing.pays_at_checkout(session, access.environment.pk, access.customer_id)
            view = dataclasses.replace(view, to_payment=to_payment)
        return ActionResult(page=Page(access, security.csrf_token(settings, access), view), confirm=True)
    # A trial starts now: its card can wait for the trial's end.
    outcome = await _provision(session, settings, access, params, request, preview.trial_end is None)
    return await _after_change(session, settings, access, params, outcome, "paywall", now)


async def _provision(
    session: AsyncSession,
    settings: Settings,
    access: security.WidgetAccess,
    params: WidgetParams,
    request: ProvisionRequest,
    collect_payment: bool = True,
) -> subscribing.Outcome:
    """Provision; Checkout, when payment is needed, returns to the (checked) embedding page."""
    host_url = security.checked_host_url(access, params.host_url)
    return await subscribing.provision(
        session, settings, access.environment, request, host_url=host_url, collect_payment=collect_payment
    )


async def _after_change(
    session: AsyncSession,
    settings: Settings,
    access: security.WidgetAccess,
    params: WidgetParams,
    outcome: subscribing.Outcome,
    widget: str,
    now: dt.datetime,
) -> ActionResult:
    if outcome.checkout_url is not None:
        return ActionResult(navigate=outcome.checkout_url)
    assert outcome.subscription is not None
    events = {"tollgate:subscription-changed": subscribing.event(outcome.subscription)}
    return ActionResult(events=events, page=await _rerender(session, settings, params, widget, now))


async def _rerender(
    session: AsyncSession, settings: Settings, params: WidgetParams, widget: str, now: dt.datetime
) -> Page:
    # Changes were flushed in this transaction, so the page reads them back as they are now.
    session.expire_all()
    if widget == "portal":
        return await portal_page(session, settings, params, now)
    return await paywall_page(session, settings, params, now)


async def _customers_subscription(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    form: Mapping[str, str],
    origin: str | None,
) -> tuple[security.WidgetAccess, str]:
    """A checked action on the form's `subscription-id`, which must be this customer's."""
    access = await checked_action(session, settings, params, form.get("csrf"), origin, customer_required=True)
    customer_pk = await _customer_pk(session, access)
    assert customer_pk is not None
    ref = await subscribing.owned_subscription(
        session, access.environment.pk, customer_pk, form.get("subscription-id")
    )
    return access, ref


async def cancel_subscription(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    form: Mapping[str, str],
    origin: str | None,
    now: dt.datetime,
) -> ActionResult:
    """Cancel at period end, after a confirmation step (the portal shows it on the card)."""
    access, ref = await _customers_subscription(session, settings, params, form, origin)
    if form.get("confirm") != "1":
        return ActionResult(
            page=await portal_page(session, settings, params, now), confirm=True, confirming=ref
        )
    sub = await subscribing.cancel(session, access.environment.pk, ref, immediately=False)
    events = {"tollgate:subscription-changed": subscribing.event(sub)}
    return ActionResult(events=events, page=await _rerender(session, settings, params, "portal", now))


async def cancel_scheduled_change(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    form: Mapping[str, str],
    origin: str | None,
    now: dt.datetime,
) -> ActionResult:
    access, ref = await _customers_subscription(session, settings, params, form, origin)
    sub = await subscribing.cancel_scheduled(session, access.environment.pk, ref)
    widget = "portal" if form.get("view") == "portal" else "paywall"
    events = {"tollgate:subscription-changed": subscribing.event(sub)}
    return ActionResult(events=events, page=await _rerender(session, settings, params, widget, now))


async def manage_billing(
    session: AsyncSession, settings: Settings, params: WidgetParams, csrf: str | None, origin: str | None
) -> ActionResult:
    """Stripe's Billing Portal for this customer, returning to the embedding page."""
    access = await checked_action(session, settings, params, csrf, origin, customer_required=True)
    assert access.customer_id is not None
    return_url = security.checked_host_url(access, params.host_url) or (
        f"{settings.public_url}{subscribing.RETURN_PATH}"
    )
    url = await billing.portal_url(session, settings, access.environment, access.customer_id, return_url)
    return ActionResult(navigate=url)


def checkout_request(customer_id: str, plan_id: str, form: Mapping[str, str]) -> ProvisionRequest:
    """The checkout form's choices: `billing-period`, `unit.<feature>` and `addon.<id>` quantities."""

    def quantity(value: str | None) -> int:
        try:
            return int(value or 0)
        except ValueError:
            raise InvalidRequest("Quantities are whole numbers.", code="invalid_quantity") from None

    period = viewmodels.parse_period(form.get("billing-period")) or BillingPeriod.MONTHLY
    addons = [
        AddonInput(addon_id=k.removeprefix("addon."), quantity=quantity(v))
        for k, v in form.items()
        if k.startswith("addon.") and quantity(v) > 0
    ]
    units = [
        UnitQuantityInput(feature_id=k.removeprefix("unit."), quantity=quantity(v))
        for k, v in form.items()
        if k.startswith("unit.") and v
    ]
    return ProvisionRequest(
        customer_id=customer_id, plan_id=plan_id, billing_period=period, addons=addons, unit_quantities=units
    )


async def checkout_summary(
    session: AsyncSession, settings: Settings, params: WidgetParams, form: Mapping[str, str], now: dt.datetime
) -> Page:
    """The live order summary: the subscriptions preview of what the form describes."""
    access = await _access(session, settings, params, customer_required=True)
    await _customer_pk(session, access)
    plan = await _published_plan(session, access.environment.pk, params.plan_id)
    assert access.customer_id is not None
    request = checkout_request(access.customer_id, plan.ref, form)
    preview = await subscribing.preview(session, access.environment.pk, request, now)
    return Page(access, security.csrf_token(settings, access), confirm_view(plan, "subscribe", preview))


async def checkout_subscribe(
    session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    form: Mapping[str, str],
    origin: str | None,
    now: dt.datetime,
) -> ActionResult:
    access = await checked_action(session, settings, params, form.get("csrf"), origin, customer_required=True)
    plan = await _published_plan(session, access.environment.pk, params.plan_id)
    assert access.customer_id is not None
    request = checkout_request(access.customer_id, plan.ref, form)
    outcome = await _provision(session, settings, access, params, request)
    if outcome.checkout_url is not None:
        return ActionResult(navigate=outcome.checkout_url)
    assert outcome.subscription is not None
    events = {"tollgate:subscription-changed": subscribing.event(outcome.subscription)}
    return ActionResult(events=events, page=Page(access, security.csrf_token(settings, access), plan.name))


_ACTIONS = {"subscribe", "start_trial", "upgrade", "downgrade", "switch_period", "contact"}
