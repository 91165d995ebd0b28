"""Connecting an environment to Stripe: modes, keys, the webhook endpoint, removal.

Connecting is one of the few calls that reach Stripe inside a request: the user waits for the
answer (is the key good, which account is it).
"""

from __future__ import annotations

import logging
import secrets

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.gateway import STRIPE_API_VERSION, api_base_for, dashboard_url, stripe_client
from app.billing.models import IntegrationStatus, StripeIntegration, StripeMode
from app.billing.schemas import (
    GracePeriodCheck,
    IntegrationConnect,
    IntegrationOut,
    IntegrationUpdate,
    Permission,
)
from app.billing.tax import ensure_stripe_tax_active
from app.core.crypto import SecretBox, redact
from app.core.errors import InvalidRequest, NotFound, TollgateError, Unprocessable
from app.core.outbox import record_change
from app.core.schemas import unset_fields
from app.environments.service import EnvironmentRef
from app.settings import Settings

logger = logging.getLogger("tollgate.billing")

# What a restricted key needs, so users can grant exactly this and no more.
READ_PERMISSIONS = [
    "account",
    "charges and refunds",
    "events",
    "payment intents",
    "promotion codes",
    "sources",
    "test clocks",
    "tokens",
    "webhook endpoints",
]
WRITE_PERMISSIONS = [
    "checkout sessions",
    "coupons",
    "customers",
    "invoices",
    "payment methods",
    "prices",
    "products",
    "setup intents",
    "subscriptions",
    "tax rates",
    "usage records",
]
PERMISSIONS = [Permission(resource=r, access="read") for r in READ_PERMISSIONS] + [
    Permission(resource=r, access="write") for r in WRITE_PERMISSIONS
]

# The events the sync consumes.
WEBHOOK_EVENTS = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "checkout.session.completed",
    "checkout.session.expired",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.updated",
    "customer.deleted",
    "payment_method.attached",
]

MIN_GRACE_PERIOD_SECONDS = 3600
# The sandbox finalizes subscription invoices one hour after creating them, as Stripe's default.
SANDBOX_GRACE_PERIOD_SECONDS = 3600


def _purpose(integration_ref: str, what: str) -> str:
    return f"stripe-integration:{integration_ref}:{what}"


def _check_key_mode(mode: StripeMode, api_key: str | None) -> str | None:
    if mode is StripeMode.SANDBOX:
        if api_key:
            raise InvalidRequest(
                "Sandbox mode needs no key; leave apiKey out.", code="api_key_not_allowed", param="apiKey"
            )
        return None
    if not api_key:
        raise InvalidRequest(
            f"{mode.value.title()} mode needs a Stripe secret or restricted key.",
            code="api_key_required",
            param="apiKey",
        )
    is_test = api_key.startswith(("sk_test_", "rk_test_"))
    is_live = api_key.startswith(("sk_live_", "rk_live_"))
    if not (is_test or is_live):
        raise InvalidRequest(
            "That is not a Stripe secret (sk_) or restricted (rk_) key; publishable keys (pk_) cannot be used.",
            code="invalid_api_key_format",
            param="apiKey",
        )
    if mode is StripeMode.TEST and is_live:
        raise Unprocessable(
            "This is a live key but Test mode is selected: choose Live mode, or paste a key that starts with sk_test_ or rk_test_.",
            code="stripe_key_mode_mismatch",
            param="apiKey",
        )
    if mode is StripeMode.LIVE and is_test:
        raise Unprocessable(
            "This is a test key but Live mode is selected: choose Test mode, or paste a key that starts with sk_live_ or rk_live_.",
            code="stripe_key_mode_mismatch",
            param="apiKey",
        )
    return api_key


def _account_name(account: stripe.Account) -> str | None:
    dashboard = account.settings.dashboard if account.settings else None
    if dashboard and dashboard.display_name:
        return dashboard.display_name
    if account.business_profile and account.business_profile.name:
        return account.business_profile.name
    return account.email


class IntegrationService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.box = SecretBox(settings.secret)

    async def _row(self, env: EnvironmentRef) -> StripeIntegration | None:
        return await self.session.scalar(
            select(StripeIntegration).where(StripeIntegration.environment_pk == env.pk)
        )

    async def _active(self, env: EnvironmentRef) -> StripeIntegration:
        row = await self._row(env)
        if row is None or row.status is not IntegrationStatus.ACTIVE:
            raise NotFound("This environment is not connected to Stripe.", code="integration_not_found")
        return row

    def api_key(self, row: StripeIntegration) -> str:
        return self.box.decrypt(row.api_key_encrypted, purpose=_purpose(row.ref, "api_key"))

    def webhook_secret(self, row: StripeIntegration) -> str | None:
        if row.webhook_secret_encrypted is None:
            return None
        return self.box.decrypt(row.webhook_secret_encrypted, purpose=_purpose(row.ref, "webhook_secret"))

    def client(self, row: StripeIntegration) -> stripe.StripeClient:
        return stripe_client(self.api_key(row), api_base_for(self.settings, row.mode is StripeMode.SANDBOX))

    def out(self, row: StripeIntegration) -> IntegrationOut:
        grace = row.invoice_grace_period_seconds
        return IntegrationOut(
            integration_id=row.ref,
            mode=row.mode,
            status=row.status,
            account_id=row.account_id,
            account_name=row.account_name,
            api_key_hint=row.api_key_hint,
            webhook_endpoint_id=row.webhook_endpoint_id,
            sync_customers=row.sync_customers,
            sync_subscriptions=row.sync_subscriptions,
            stripe_tax=row.stripe_tax,
            invoice_grace_period_seconds=grace,
            grace_period_ok=None if grace is None else grace >= MIN_GRACE_PERIOD_SECONDS,
            grace_period_check=self._grace_check(row),
            portal_configuration_id=row.portal_configuration_id,
            dashboard_url=dashboard_url(
                self.settings, row.mode is StripeMode.SANDBOX, row.mode is StripeMode.LIVE, row.account_id
            ),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _grace_check(self, row: StripeIntegration) -> GracePeriodCheck:
        grace = row.invoice_grace_period_seconds
        if row.mode is StripeMode.SANDBOX:
            settings_url = f"{self.settings.sandbox_api_base}/dashboard"
        else:
            test = "" if row.mode is StripeMode.LIVE else "test/"
            settings_url = f"https://dashboard.stripe.com/{test}settings/billing/automatic"
        if grace is None:
            # Not OK by default: Stripe has no API for this Dashboard setting, so until a draft
            # subscription invoice shows it, nobody knows, and the answer says so.
            status, message = (
                "UNKNOWN",
                "Unknown: Stripe offers no API for the invoice finalization grace period; Tollgate "
                "reads it off a draft subscription invoice, and has not seen one in this account "
                "yet. Check it in the Dashboard (link): usage-based prices need at least 1 hour, or "
                "the last usage of a period can be missed.",
            )
        elif grace >= MIN_GRACE_PERIOD_SECONDS:
            status, message = "OK", f"Invoices finalize {grace // 60} minutes after they are created."
        else:
            status, message = (
                "TOO_SHORT",
                f"Invoices finalize {grace // 60} minutes after they are created: set at least 1 hour "
                "in Stripe's subscription settings, or the last usage of a period can be missed.",
            )
        return GracePeriodCheck(
            status=status,
            required_seconds=MIN_GRACE_PERIOD_SECONDS,
            current_seconds=grace,
            message=message,
            settings_url=settings_url,
        )

    async def check_grace_period(self, env: EnvironmentRef) -> IntegrationOut:
        """Read Stripe's invoice finalization grace period off recent draft subscription invoices."""
        row = await self._active(env)
        if row.mode is StripeMode.SANDBOX:
            row.invoice_grace_period_seconds = SANDBOX_GRACE_PERIOD_SECONDS
        else:
            try:
                drafts = await self.client(row).v1.invoices.list_async(
                    params={"status": "draft", "limit": 20}
                )
            except stripe.StripeError as error:
                raise TollgateError(
                    f"Stripe could not be reached to read invoices: {error.user_message or type(error).__name__}. Try again.",
                    code="stripe_unavailable",
                    status_code=502,
                ) from None
            for invoice in drafts.data:
                parent = invoice.parent
                from_subscription = parent is not None and parent.subscription_details is not None
                if invoice.automatically_finalizes_at and from_subscription:
                    row.invoice_grace_period_seconds = invoice.automatically_finalizes_at - invoice.created
                    break
        await self.session.flush()
        return self.out(row)

    async def get(self, env: EnvironmentRef) -> IntegrationOut:
        return self.out(await self._active(env))

    async def find(self, env: EnvironmentRef) -> IntegrationOut | None:
        """Like `get`, but None when not connected (the console then offers to connect)."""
        row = await self._row(env)
        return self.out(row) if row is not None and row.status is IntegrationStatus.ACTIVE else None

    async def connect(self, env: EnvironmentRef, data: IntegrationConnect) -> IntegrationOut:
        api_key = _check_key_mode(data.mode, data.api_key)
        row = await self._row(env)
        if row is not None and row.status is IntegrationStatus.ACTIVE:
            raise Unprocessable(
                "This environment is connected already; remove the integration before connecting another.",
                code="integration_exists",
            )
        if data.mode is StripeMode.SANDBOX:
            # Reconnecting Sandbox mode resumes the same sandbox account.
            if row is not None and row.mode is StripeMode.SANDBOX:
                api_key = self.api_key(row)
            else:
                api_key = "sk_test_tollgate" + secrets.token_hex(16)
        assert api_key is not None
        ref = row.ref if row is not None else "int_" + secrets.token_hex(10)
        client = stripe_client(api_key, api_base_for(self.settings, data.mode is StripeMode.SANDBOX))
        try:
            account = await client.v1.accounts.retrieve_current_async()
        except stripe.AuthenticationError as error:
            raise Unprocessable(
                f"Stripe refused the key: {error.user_message or 'invalid API key'}",
                code="stripe_key_invalid",
                param="apiKey",
            ) from None
        except stripe.StripeError as error:
            raise TollgateError(
                f"Stripe could not be reached to check the key: {error.user_message or type(error).__name__}. Try again.",
                code="stripe_unavailable",
                status_code=502,
            ) from None
        if row is not None and row.account_id != account.id:
            # Our billing ids point into the old account: resuming there would duplicate or lose objects.
            raise Unprocessable(
                f"This environment was connected to Stripe account {row.account_id}; reconnect that account "
                "(other accounts are not supported yet).",
                code="stripe_account_changed",
            )
        endpoint = await client.v1.webhook_endpoints.create_async(
            params={
                "url": f"{self.settings.public_url}/webhooks/stripe/{ref}",
                "enabled_events": WEBHOOK_EVENTS,  # type: ignore[typeddict-item]
                "api_version": STRIPE_API_VERSION,
                "description": f"Tollgate environment {env.slug}",
                "metadata": {"tollgateEnvironment": env.slug, "tollgateIntegrationId": ref},
            },
            options={"idempotency_key": f"tollgate-webhook-endpoint-{ref}-{secrets.token_hex(4)}"},
        )
        if row is None:
            row = StripeIntegration(environment_pk=env.pk, ref=ref)
            self.session.add(row)
        row.mode = data.mode
        row.status = IntegrationStatus.ACTIVE
        row.api_key_encrypted = self.box.encrypt(api_key, purpose=_purpose(ref, "api_key"))
        row.api_key_hint = redact(api_key)
        row.account_id = account.id
        row.account_name = _account_name(account)
        row.webhook_endpoint_id = endpoint.id
        row.webhook_secret_encrypted = self.box.encrypt(
            endpoint.secret or "", purpose=_purpose(ref, "webhook_secret")
        )
        row.removed_at = None
        if row.mode is StripeMode.SANDBOX:
            row.invoice_grace_period_seconds = SANDBOX_GRACE_PERIOD_SECONDS
        await self.session.flush()
        record_change(self.session, env.pk, "integration", row.pk, "connected")
        logger.info(
            "environment %s connected to Stripe account %s (%s)", env.slug, account.id, data.mode.value
        )
        return self.out(row)

    async def update(self, env: EnvironmentRef, data: IntegrationUpdate) -> IntegrationOut:
        row = await self._active(env)
        # Only what changes: re-sending a toggle as it is (a console form sends all) resumes nothing.
        fields = {f: v for f, v in unset_fields(data).items() if getattr(row, f) != v}
        if fields.get("stripe_tax") and not row.stripe_tax:
            await ensure_stripe_tax_active(self.client(row))
        for field, value in fields.items():
            setattr(row, field, value)
        await self.session.flush()
        if fields.get("sync_customers") or fields.get("sync_subscriptions"):
            record_change(self.session, env.pk, "integration", row.pk, "resumed")
        return self.out(row)

    async def remove(self, env: EnvironmentRef) -> IntegrationOut:
        """Stop syncing and delete our webhook endpoint; Stripe's objects and our billing ids stay."""
        row = await self._active(env)
        if row.webhook_endpoint_id:
            try:
                await self.client(row).v1.webhook_endpoints.delete_async(row.webhook_endpoint_id)
            except stripe.InvalidRequestError:
                pass  # already gone in Stripe
            except stripe.StripeError as error:
                raise TollgateError(
                    f"Stripe could not be reached to delete the webhook endpoint: {error.user_message or type(error).__name__}. Try again.",
                    code="stripe_unavailable",
                    status_code=502,
                ) from None
        row.status = IntegrationStatus.REMOVED
        row.webhook_endpoint_id = None
        row.webhook_secret_encrypted = None
        row.removed_at = row.updated_at
        await self.session.flush()
        return self.out(row)
