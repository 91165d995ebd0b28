""" "Connect with Stripe": OAuth instead of pasting a key, ending in the same connect path.

`start` answers Stripe's authorize URL carrying a signed, expiring `state` (which environment,
which mode, where to send the browser back). The browser-facing callback checks the state,
exchanges the code for the account's key with the platform's secret key, and connects.
Where the API base points at the sandbox (tests, offline demos), the sandbox's consent page
and token endpoint play Stripe's part.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any, cast

import msgspec
import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.checkout import append_query
from app.billing.gateway import stripe_client
from app.billing.integration import IntegrationService
from app.billing.models import StripeMode
from app.billing.schemas import IntegrationConnect, OAuthStartOut
from app.core.errors import InvalidRequest, TollgateError, Unprocessable
from app.environments.models import Environment
from app.environments.service import EnvironmentRef
from app.settings import Settings

logger = logging.getLogger("tollgate.billing.oauth")

STATE_LIFETIME_SECONDS = 600
CONNECT_BASE = "https://connect.stripe.com"
CALLBACK_PATH = "/integrations/stripe/oauth/callback"


class OAuthState(msgspec.Struct, frozen=True):
    environment_pk: int
    mode: StripeMode
    return_url: str
    expires_at: int
    nonce: str


def _state_key(settings: Settings) -> bytes:
    return hashlib.sha256(b"tollgate oauth state v1\x00" + settings.secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(settings: Settings, state: OAuthState) -> str:
    body = _b64(msgspec.json.encode(state))
    mac = hmac.new(_state_key(settings), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify_state(settings: Settings, token: str, *, now: float | None = None) -> OAuthState | None:
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(_state_key(settings), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), mac):
            return None
        state = msgspec.json.decode(_unb64(body), type=OAuthState)
    except (ValueError, msgspec.DecodeError):
        return None
    if state.expires_at < (time.time() if now is None else now):
        return None
    return state


def connect_configured(settings: Settings) -> bool:
    """Whether "Connect with Stripe" can be offered (Test and Live mode share the platform)."""
    return bool(settings.stripe_connect_client_id and settings.stripe_connect_secret_key)


def _platform(settings: Settings, mode: StripeMode) -> tuple[str, str]:
    """The Connect client id and the platform secret key, or a clear refusal."""
    if mode is StripeMode.SANDBOX:
        raise InvalidRequest(
            "Sandbox mode needs no Stripe account: connect it with PUT /integrations/stripe.",
            code="invalid_mode",
            param="mode",
        )
    client_id, secret_key = settings.stripe_connect_client_id, settings.stripe_connect_secret_key
    if not client_id or not secret_key:
        raise Unprocessable(
            "Connect with Stripe is not configured: set TOLLGATE_STRIPE_CONNECT_CLIENT_ID and "
            "TOLLGATE_STRIPE_CONNECT_SECRET_KEY, or paste an API key instead.",
            code="stripe_connect_not_configured",
        )
    return client_id, secret_key


def _connect_base(settings: Settings) -> str:
    return settings.stripe_api_base or CONNECT_BASE


def start(settings: Settings, env: EnvironmentRef, mode: StripeMode, return_url: str) -> OAuthStartOut:
    client_id, _ = _platform(settings, mode)
    expires = int(time.time()) + STATE_LIFETIME_SECONDS
    state = sign_state(settings, OAuthState(env.pk, mode, return_url, expires, secrets.token_urlsafe(12)))
    url = append_query(
        f"{_connect_base(settings)}/oauth/authorize",
        response_type="code",
        client_id=client_id,
        scope="read_write",
        redirect_uri=f"{settings.public_url}{CALLBACK_PATH}",
        state=state,
    )
    return OAuthStartOut(url=url, state=state, expires_at=dt.datetime.fromtimestamp(expires, dt.UTC))


async def _exchange(settings: Settings, secret_key: str, code: str) -> str:
    """The connected account's secret key for an authorization code."""
    client = stripe_client(secret_key, settings.stripe_api_base)
    # The SDK's OAuth service has no async variant; keep the event loop free.
    token = await asyncio.to_thread(
        client.oauth.token, cast(Any, {"grant_type": "authorization_code", "code": code})
    )
    access_token = getattr(token, "access_token", None)
    if not access_token:
        raise Unprocessable("Stripe returned no key for this account.", code="stripe_oauth_failed")
    return str(access_token)


async def callback(
    session: AsyncSession,
    settings: Settings,
    *,
    state_token: str | None,
    code: str | None,
    error: str | None,
) -> str | None:
    """Finish the connection; answer where to send the browser (None: the state is not ours)."""
    state = verify_state(settings, state_token or "")
    if state is None:
        return None
    if error or not code:
        return append_query(state.return_url, stripeConnected="false", error=error or "missing_code")
    slug = await session.scalar(select(Environment.slug).where(Environment.pk == state.environment_pk))
    if slug is None:
        return append_query(state.return_url, stripeConnected="false", error="environment_not_found")
    env = EnvironmentRef(pk=state.environment_pk, slug=slug)
    try:
        _, secret_key = _platform(settings, state.mode)
        try:
            api_key = await _exchange(settings, secret_key, code)
        except stripe.StripeError as failure:
            raise Unprocessable(
                f"Stripe did not accept the authorization: {failure.user_message or failure}",
                code="stripe_oauth_failed",
            ) from None
        connected = await IntegrationService(session, settings).connect(
            env, IntegrationConnect(mode=state.mode, api_key=api_key)
        )
    except TollgateError as failure:
        await session.rollback()
        logger.info("Connect with Stripe for %s refused: %s", slug, failure.code)
        return append_query(state.return_url, stripeConnected="false", error=failure.code)
    return append_query(state.return_url, stripeConnected="true", integrationId=connected.integration_id)
