"""Settings → Integrations → Stripe: connect (key or "Connect with Stripe"), the connected
account, its toggles, the grace period check, and removal after a confirmation.

Every action goes through `IntegrationService`, the same service as /api/v1/integrations/stripe.
The API key typed into the form is never shown again, not even on a refused form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.context import AdminContext, flash
from app.admin.forms import Errors, FormData, checked, convert, text
from app.admin.rendering import redirect, render
from app.admin.security import security_headers
from app.admin.views.catalog import archive_and_return, save
from app.billing import oauth
from app.billing.integration import PERMISSIONS, IntegrationService
from app.billing.models import StripeMode
from app.billing.schemas import IntegrationConnect, IntegrationOut, IntegrationUpdate
from app.settings import Settings

STRIPE_PAGE = "/admin/settings/integrations/stripe"
MODES = [
    (StripeMode.SANDBOX.value, "Sandbox"),
    (StripeMode.TEST.value, "Test mode"),
    (StripeMode.LIVE.value, "Live"),
]
TOGGLES = ("syncCustomers", "syncSubscriptions", "stripeTax")
# Why "Connect with Stripe" came back without a connection (the callback's `error` code).
OAUTH_ERRORS = {
    "access_denied": "The connection was declined on Stripe's page.",
    "stripe_key_mode_mismatch": "Stripe gave a key of the other mode: choose the mode that matches the account.",
    "integration_exists": "This environment is connected already.",
    "stripe_oauth_failed": "Stripe did not accept the authorization. Try again.",
    "stripe_account_changed": "This environment was connected to another Stripe account before; connect that one.",
    "stripe_unavailable": "Stripe could not be reached. Try again.",
}


def _mode(value: str | None) -> str:
    return value if value in {m for m, _ in MODES} else StripeMode.SANDBOX.value


def connect_data(form: FormData) -> IntegrationConnect:
    return convert({"mode": text(form, "mode") or "", "apiKey": text(form, "apiKey")}, IntegrationConnect)


def toggle_data(form: FormData) -> IntegrationUpdate:
    return convert({name: checked(form, name) for name in TOGGLES}, IntegrationUpdate)


def toggle_values(form: FormData | None = None, integration: IntegrationOut | None = None) -> dict[str, bool]:
    if form is not None:
        return {name: checked(form, name) for name in TOGGLES}
    assert integration is not None
    return {
        "syncCustomers": integration.sync_customers,
        "syncSubscriptions": integration.sync_subscriptions,
        "stripeTax": integration.stripe_tax,
    }


def oauth_notice(
    connected: str | None, error: str | None, integration: IntegrationOut | None
) -> tuple[str, bool] | None:
    """The sentence for the page "Connect with Stripe" returned to, and whether it is an error."""
    if connected == "true":
        # Only the address says so: believe it only when the environment is connected.
        return ("Connected with Stripe.", False) if integration else None
    if connected == "false":
        return OAUTH_ERRORS.get(error or "", f"Stripe did not connect ({error or 'unknown reason'})."), True
    return None


def stripe_page(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    settings: Settings,
    integration: IntegrationOut | None,
    *,
    mode: str | None = None,
    errors: Errors | None = None,
    toggles: dict[str, bool] | None = None,
    notice: tuple[str, bool] | None = None,
    status_code: int = 200,
) -> Response[str]:
    return render(
        request,
        "admin/settings/stripe.html",
        {
            "ctx": ctx,
            "section": "settings",
            "integration": integration,
            "mode": _mode(mode),
            "modes": MODES,
            "errors": errors or {},
            "toggles": toggles or (toggle_values(integration=integration) if integration else {}),
            "notice": notice,
            "permissions": PERMISSIONS,
            "connect_configured": oauth.connect_configured(settings),
            "page_url": STRIPE_PAGE,
        },
        status_code=status_code,
    )


async def _submit(
    request: Request[Any, Any, Any],
    ctx: AdminContext,
    service: IntegrationService,
    call: Callable[[], Awaitable[IntegrationOut]],
    done: Callable[[IntegrationOut], str],
    **shown: Any,
) -> Response[str]:
    """A form's service call: on success a notice and back to the page; refused, the page with
    the errors next to their fields (and the form as it was sent, except any key)."""
    result, errors = await save(request, service.session, lambda _: None, lambda _: call())
    if errors:
        integration = await service.find(ctx.env_ref)
        return stripe_page(
            request, ctx, service.settings, integration, errors=errors, status_code=422, **shown
        )
    flash(request, done(result))
    return redirect(request, ctx.url(STRIPE_PAGE))


class SettingsController(Controller):
    path = "/settings"

    @get("/")
    async def index(self, request: Request[Any, Any, Any], ctx: AdminContext) -> Response[str]:
        # Integrations are the only settings so far; the environment switcher lands here.
        return redirect(request, ctx.url(STRIPE_PAGE))

    @get("/integrations/stripe")
    async def stripe(
        self,
        request: Request[Any, Any, Any],
        ctx: AdminContext,
        db_session: AsyncSession,
        settings: Settings,
        mode: str | None = None,
        connected: Annotated[str | None, Parameter(query="stripeConnected", max_length=10)] = None,
        error: Annotated[str | None, Parameter(query="error", max_length=100)] = None,
    ) -> Response[str]:
        integration = await IntegrationService(db_session, settings).find(ctx.env_ref)
        return stripe_page(
            request, ctx, settings, integration, mode=mode, notice=oauth_notice(connected, error, integration)
        )

    @post("/integrations/stripe/connect")
    async def connect(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, settings: Settings
    ) -> Response[str]:
        form = await request.form()
        service = IntegrationService(db_session, settings)
        return await _submit(
            request,
            ctx,
            service,
            lambda: service.connect(ctx.env_ref, connect_data(form)),
            lambda done: f"Connected to Stripe account {done.account_name or done.account_id}.",
            mode=text(form, "mode"),
        )

    @get("/integrations/stripe/oauth")
    async def oauth_start(
        self, ctx: AdminContext, settings: Settings, mode: Annotated[StripeMode, Parameter(query="mode")]
    ) -> Response[str]:
        """To Stripe's consent page; Stripe sends the browser back to this page through the callback."""
        started = oauth.start(settings, ctx.env_ref, mode, settings.public_url + ctx.url(STRIPE_PAGE))
        return Response("", status_code=303, headers={**security_headers(), "Location": started.url})

    @post("/integrations/stripe/options")
    async def options(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, settings: Settings
    ) -> Response[str]:
        form = await request.form()
        service = IntegrationService(db_session, settings)
        return await _submit(
            request,
            ctx,
            service,
            lambda: service.update(ctx.env_ref, toggle_data(form)),
            lambda _: "Stripe settings saved.",
            toggles=toggle_values(form),
        )

    @post("/integrations/stripe/grace-period-check")
    async def grace_period_check(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, settings: Settings
    ) -> Response[str]:
        # The result is stored on the integration and shown on the page; the notice says it was checked.
        return await archive_and_return(
            request,
            ctx,
            db_session,
            IntegrationService(db_session, settings).check_grace_period(ctx.env_ref),
            ctx.url(STRIPE_PAGE) + "#grace-period",
            "Grace period checked.",
        )

    @get("/integrations/stripe/remove")
    async def confirm_remove(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, settings: Settings
    ) -> Response[str]:
        """The confirmation as a page: where the Remove link leads when the dialog cannot open."""
        integration = await IntegrationService(db_session, settings).get(ctx.env_ref)
        return _confirm_page(request, ctx, integration)

    @post("/integrations/stripe/remove")
    async def remove(
        self, request: Request[Any, Any, Any], ctx: AdminContext, db_session: AsyncSession, settings: Settings
    ) -> Response[str]:
        form = await request.form()
        service = IntegrationService(db_session, settings)
        if form.get("confirm") != "remove":
            # Only the confirmation's own button removes: anything else asks first.
            return _confirm_page(request, ctx, await service.get(ctx.env_ref))
        return await archive_and_return(
            request,
            ctx,
            db_session,
            service.remove(ctx.env_ref),
            ctx.url(STRIPE_PAGE),
            "Stripe integration removed. Stripe's objects and the billing ids Tollgate keeps stay as they are.",
        )


def _confirm_page(
    request: Request[Any, Any, Any], ctx: AdminContext, integration: IntegrationOut
) -> Response[str]:
    return render(
        request,
        "admin/settings/remove.html",
        {"ctx": ctx, "section": "settings", "integration": integration, "page_url": STRIPE_PAGE},
    )
