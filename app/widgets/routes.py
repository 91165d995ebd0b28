"""/widgets/*: the pages rendered inside the embeddable widgets' iframes, and their POST actions.

Every page is served with a strict CSP (scripts from 'self' only, framed only by the
environment's allowed origins). An htmx request gets the named fragment, or problem+json
when refused; a plain request gets the whole page, or a full error page the frame reports
to its host.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app import static_assets
from app.core.errors import TollgateError
from app.core.problems import problem
from app.db import Database
from app.settings import Settings
from app.widgets import security, service, subscribing
from app.widgets.service import Page, WidgetParams

FormData = dict[str, str]
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)

_TITLES = {"paywall": "Plans and pricing", "portal": "Your subscription", "checkout": "Checkout"}


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def asset_url(relative: str) -> str:
    """A frame asset's URL with its content hash: cached by the browser for good."""
    return f"/static/{relative}?v={static_assets.version(relative)}"


def preload_links() -> str:
    """A full frame page's `Link` header: its stylesheet and frame script are requested as soon
    as the response arrives, not once the frame's renderer has started and parsed the head (a
    cross-site frame's process often starts only then). htmx is not preloaded: it never holds up
    the first paint."""
    return (
        f"<{asset_url('widgets/widget.css')}>; rel=preload; as=style, "
        f"<{asset_url('widgets/frame.js')}>; rel=preload; as=script"
    )


def _context(params: WidgetParams, widget: str, nonce: str, **extra: Any) -> dict[str, Any]:
    return {
        "widget": widget,
        "title": _TITLES[widget],
        "params": params,
        "texts": params.texts,
        "theme": params.theme,
        "theme_css": params.theme_css,
        "nonce": nonce,
        "asset": asset_url,
        **extra,
    }


async def _refused(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    widget: str,
    exc: TollgateError,
) -> Response[Any]:
    if _is_htmx(request) or request.method == "POST":
        response = problem(exc.status_code, exc.code, exc.message)
        response.headers.update(security.widget_headers((), None))
        return response
    ancestors = await service.frame_ancestors(db_session, settings, params)
    host_origin = params.host_origin if params.host_origin in ancestors or ancestors == ("*",) else None
    nonce = security.new_nonce()
    # Nothing about the customer is in an error page, only the reason, for the host to show.
    return Template(
        "widgets/error.html",
        context=_context(params, widget, nonce, error=exc, host_origin=host_origin),
        status_code=exc.status_code,
        headers={**security.widget_headers(ancestors, nonce), "Link": preload_links()},
    )


# Renders interleave at every database await: with many at once, each takes as long as all of
# them. A few slots per process keep each render short, at the same throughput.
RENDER_SLOTS = 2
# One semaphore per event loop (tests run several servers, each on its own loop).
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _render_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(RENDER_SLOTS)
    return slots


async def _build(
    db_session: AsyncSession,
    database: Database,
    params: WidgetParams,
    build: Callable[[AsyncSession], Awaitable[Page]],
) -> Page:
    """A page is built in a read session: on SQLite, concurrent renders then do not queue for
    the write lock. The rare page that must write (a transition caught up on, the return from
    Checkout) does so in the request's ordinary session."""
    if params.checkout_result is None:
        try:
            async with database.session(read=True) as session:
                return await build(session)
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
    return await build(db_session)


async def _page(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    database: Database,
    settings: Settings,
    widget: str,
    build: Callable[[AsyncSession, WidgetParams], Awaitable[Page]],
) -> Response[Any]:
    """A widget's page (`widgets/<widget>.html`), or its body alone for htmx (`_<widget>_body.html`)."""
    params = service.parse_params(request.query_params)
    async with _render_slots():
        # Timed from here: the wait for a slot is queueing, which the client's latency shows.
        started = time.perf_counter()
        try:
            page = await _build(db_session, database, params, lambda session: build(session, params))
        except TollgateError as exc:
            return await _refused(request, db_session, settings, params, widget, exc)
    nonce = security.new_nonce()
    context = _context(
        params,
        widget,
        nonce,
        view=page.view,
        csrf=page.csrf,
        access=page.access,
        host_origin=page.access.host_origin,
        notice=page.notice,
        can_manage_billing=page.can_manage_billing,
    )
    # Rendered here rather than by a Template response, so the Server-Timing header covers
    # the whole of the work: checks, reads, view model and HTML.
    engine: Any = request.app.template_engine
    htmx = _is_htmx(request)
    html = engine.get_template(f"widgets/_{widget}_body.html" if htmx else f"widgets/{widget}.html").render(
        **context
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    headers = {
        **security.widget_headers(page.access.frame_ancestors, nonce),
        "Server-Timing": f"render;dur={elapsed_ms:.2f}",
    }
    if not htmx:
        headers["Link"] = preload_links()
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@get("/paywall", name="widgets.paywall")
async def paywall(
    request: Request[Any, Any, Any], db_session: AsyncSession, database: Database, settings: Settings
) -> Response[Any]:
    return await _page(
        request, db_session, database, settings, "paywall",
        lambda session, params: service.paywall_page(session, settings, params, _now()),
    )  # fmt: skip


@get("/portal", name="widgets.portal")
async def portal(
    request: Request[Any, Any, Any], db_session: AsyncSession, database: Database, settings: Settings
) -> Response[Any]:
    return await _page(
        request, db_session, database, settings, "portal",
        lambda session, params: service.portal_page(session, settings, params, _now()),
    )  # fmt: skip


@get("/checkout", name="widgets.checkout")
async def checkout(
    request: Request[Any, Any, Any], db_session: AsyncSession, database: Database, settings: Settings
) -> Response[Any]:
    # The form's choices (period, quantities, add-ons) ride in the query: the live summary.
    choices = dict(request.query_params.items())
    return await _page(
        request, db_session, database, settings, "checkout",
        lambda session, params: service.checkout_page(session, settings, params, _now(), choices),
    )  # fmt: skip


def _render_action(
    request: Request[Any, Any, Any],
    params: WidgetParams,
    result: service.ActionResult,
    widget: str,
    fallback: str,
) -> Response[Any]:
    """An action's answer: events for the host (HX-Trigger), then the page to show."""
    headers: dict[str, str] = dict(security.widget_headers((), None))
    if result.navigate is not None:
        if not _is_htmx(request):
            return Redirect(result.navigate, status_code=303)
        # Top-level navigation: the host element checks the URL, then moves the whole window.
        headers["HX-Trigger"] = json.dumps({"tollgate:navigate": {"url": result.navigate}})
        headers["HX-Reswap"] = "none"
        return Response("", status_code=200, media_type="text/html", headers=headers)
    if result.page is None:
        if not _is_htmx(request):
            # Without script the frame cannot tell its host anything: back to the plans.
            return Redirect(fallback, status_code=303)
        headers["HX-Trigger"] = json.dumps(result.events)
        headers["HX-Reswap"] = "none"
        return Response("", status_code=200, media_type="text/html", headers=headers)
    if not _is_htmx(request) and not result.confirm and widget != "checkout":
        return Redirect(fallback, status_code=303)
    page = result.page
    nonce = security.new_nonce()
    context = _context(
        params,
        widget,
        nonce,
        view=page.view,
        csrf=page.csrf,
        access=page.access,
        host_origin=page.access.host_origin,
        confirming=result.confirming,
        can_manage_billing=page.can_manage_billing,
    )
    name = {
        ("paywall", True): ("widgets/confirm.html", "widgets/_confirm_body.html"),
        ("paywall", False): ("widgets/paywall.html", "widgets/_paywall_body.html"),
        ("portal", True): ("widgets/portal.html", "widgets/_portal_body.html"),
        ("portal", False): ("widgets/portal.html", "widgets/_portal_body.html"),
        ("checkout", False): ("widgets/checkout_done.html", "widgets/_checkout_done.html"),
        ("checkout", True): ("widgets/checkout_done.html", "widgets/_checkout_done.html"),
    }[(widget, result.confirm)]
    engine: Any = request.app.template_engine
    html = engine.get_template(name[1] if _is_htmx(request) else name[0]).render(**context)
    if result.events:
        headers["HX-Trigger"] = json.dumps(result.events)
    headers.update(security.widget_headers(page.access.frame_ancestors, nonce))
    return Response(html, status_code=200, media_type="text/html; charset=utf-8", headers=headers)


async def _action(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    settings: Settings,
    params: WidgetParams,
    widget: str,
    run: Callable[[], Awaitable[service.ActionResult]],
) -> Response[Any]:
    try:
        result = await run()
    except TollgateError as exc:
        # A refusal changes nothing: drop whatever the service had flushed before it refused.
        await db_session.rollback()
        return await _refused(request, db_session, settings, params, widget, exc)
    back = "/widgets/portal" if widget == "portal" else "/widgets/paywall"
    return _render_action(request, params, result, widget, params.url(back))


@post("/actions/select-plan", name="widgets.select_plan")
async def select_plan(
    request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, data: FormData = FORM
) -> Response[Any]:
    params = service.parse_params(data)
    return await _action(
        request,
        db_session,
        settings,
        params,
        "paywall",
        lambda: service.select_plan(
            db_session,
            settings,
            params,
            data.get("csrf"),
            request.headers.get("origin"),
            data.get("action"),
            confirmed=data.get("confirm") == "1",
            now=_now(),
        ),
    )


@post("/actions/cancel-scheduled-change", name="widgets.cancel_scheduled_change")
async def cancel_scheduled_change(
    request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, data: FormData = FORM
) -> Response[Any]:
    params = service.parse_params(data)
    widget = "portal" if data.get("view") == "portal" else "paywall"
    return await _action(
        request,
        db_session,
        settings,
        params,
        widget,
        lambda: service.cancel_scheduled_change(
            db_session, settings, params, data, request.headers.get("origin"), _now()
        ),
    )


@post("/actions/cancel-subscription", name="widgets.cancel_subscription")
async def cancel_subscription(
    request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, data: FormData = FORM
) -> Response[Any]:
    params = service.parse_params(data)
    return await _action(
        request,
        db_session,
        settings,
        params,
        "portal",
        lambda: service.cancel_subscription(
            db_session, settings, params, data, request.headers.get("origin"), _now()
        ),
    )


@post("/actions/manage-billing", name="widgets.manage_billing")
async def manage_billing(
    request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, data: FormData = FORM
) -> Response[Any]:
    """Stripe's Billing Portal: the whole host page goes there (`tollgate:navigate`)."""
    params = service.parse_params(data)
    return await _action(
        request,
        db_session,
        settings,
        params,
        "portal",
        lambda: service.manage_billing(
            db_session, settings, params, data.get("csrf"), request.headers.get("origin")
        ),
    )


@get("/returned", name="widgets.returned", sync_to_thread=False)
def returned(request: Request[Any, Any, Any]) -> Template:
    """Where Stripe's pages send the customer when the widget did not know its host page."""
    outcome = request.query_params.get(subscribing.MARKER)
    return Template(
        "widgets/returned.html",
        context={"outcome": outcome if outcome in service.CHECKOUT_RESULTS else None},
        headers=security.widget_headers((), None),
    )


@post("/actions/checkout", name="widgets.start_checkout")
async def start_checkout(
    request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings, data: FormData = FORM
) -> Response[Any]:
    params = service.parse_params(data)
    return await _action(
        request,
        db_session,
        settings,
        params,
        "checkout",
        lambda: service.checkout_subscribe(
            db_session, settings, params, data, request.headers.get("origin"), _now()
        ),
    )


widget_router = Router(
    path="/widgets",
    route_handlers=[
        paywall,
        portal,
        checkout,
        select_plan,
        cancel_scheduled_change,
        cancel_subscription,
        manage_billing,
        start_checkout,
        returned,
    ],
    include_in_schema=False,
)
