"""Who may see a widget, from where: publishable key, customer token, CSRF token, CSP.

- The publishable key only names the environment: it unlocks the public catalog, nothing else.
- Anything about a customer needs that customer's token (minted by the host's server with
  the environment's server key), checked here on every request, including each POST.
- POSTs from the frame also carry a CSRF token: an HMAC of the instance secret over the
  environment, the customer and a digest of the customer token, with an expiry.
- Pages are framed only by the environment's allowed origins and the instance itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Forbidden, Unauthorized
from app.core.keys import verify_customer_token
from app.customers.service import token_signing_key
from app.environments.service import EnvironmentRef, environment_for_publishable_key
from app.settings import Settings
from app.widgets import queries
from app.widgets.cache import ENVIRONMENT_SECONDS, TTLCache, database_key

CSRF_LIFETIME_SECONDS = 4 * 3600
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class WidgetAccess:
    """The outcome of checking a widget request: environment, optional customer, framing."""

    environment: EnvironmentRef
    frame_ancestors: tuple[str, ...]
    host_origin: str | None  # where the frame may postMessage to; None when not embedded
    customer_id: str | None = None
    customer_token: str | None = None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def checked_host_url(access: WidgetAccess, host_url: str | None) -> str | None:
    """The embedding page's URL, if it is on the origin the frame was checked for.

    It becomes Checkout's and the Billing Portal's return address: a URL on any other origin
    would turn the widget into an open redirect, so it is refused, never dropped silently.
    """
    if not host_url:
        return None
    parts = urlsplit(host_url)
    if (
        parts.scheme not in ("http", "https")
        or len(host_url) > 2000
        or any(c.isspace() for c in host_url)
        or access.host_origin is None
        or f"{parts.scheme}://{parts.netloc}" != access.host_origin
        or access.host_origin not in access.frame_ancestors
    ):
        raise Forbidden(
            "The page's address is not on an allowed origin of this environment: Tollgate will not "
            "send the customer back there.",
            code="host_url_not_allowed",
        )
    return host_url


def clean_origins(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Only bare `scheme://host[:port]` values reach the CSP header: no paths, spaces or `;`."""
    return tuple(dict.fromkeys(v.rstrip("/") for v in values if _ORIGIN_RE.match(v.rstrip("/"))))


@dataclass(frozen=True, slots=True)
class EnvironmentContext:
    environment: EnvironmentRef
    frame_ancestors: tuple[str, ...]
    signing_key: bytes


# Like the server-key cache of app.environments: a rotated key or a new origin takes effect
# within ENVIRONMENT_SECONDS in every process.
_environments: TTLCache[tuple[str, str], EnvironmentContext] = TTLCache(ENVIRONMENT_SECONDS)


async def environment_context(
    session: AsyncSession, settings: Settings, publishable_key: str | None
) -> EnvironmentContext:
    key = (database_key(session), publishable_key or "")
    cached = _environments.get(key)
    if cached is not None:
        return cached
    environment = await environment_for_publishable_key(session, publishable_key)
    origins = await queries.environment_origins(session, environment.pk)
    context = EnvironmentContext(
        environment=environment,
        frame_ancestors=clean_origins([origin_of(settings.public_url), *origins]),
        signing_key=await token_signing_key(session, environment),
    )
    return _environments.put(key, context)


async def check_access(
    session: AsyncSession,
    settings: Settings,
    *,
    publishable_key: str | None,
    customer_id: str | None,
    customer_token: str | None,
    host_origin: str | None,
    customer_required: bool,
) -> WidgetAccess:
    context = await environment_context(session, settings, publishable_key)
    environment, ancestors = context.environment, context.frame_ancestors
    if host_origin is not None and host_origin.rstrip("/") not in ancestors:
        raise Forbidden(
            "This page's origin is not allowed to embed Tollgate widgets. Add it to the environment's allowed origins.",
            code="origin_not_allowed",
        )
    if customer_id is None and customer_required:
        raise Unauthorized("This widget needs a customer id and customer token.", code="customer_required")
    if customer_id is not None:
        if not customer_token:
            raise Unauthorized(
                "A customer token is required for this customer.", code="missing_customer_token"
            )
        if not verify_customer_token(context.signing_key, customer_id, customer_token):
            raise Forbidden("The customer token is not valid or has expired.", code="invalid_customer_token")
    return WidgetAccess(
        environment=environment,
        frame_ancestors=ancestors,
        host_origin=host_origin.rstrip("/") if host_origin else None,
        customer_id=customer_id,
        customer_token=customer_token if customer_id else None,
    )


# ---- CSRF --------------------------------------------------------------------------------------


def _csrf_key(settings: Settings) -> bytes:
    return hashlib.sha256(b"tollgate-widget-csrf|" + settings.secret.encode()).digest()


def _csrf_message(access: WidgetAccess, expires_at: int) -> bytes:
    token_digest = hashlib.sha256((access.customer_token or "").encode()).hexdigest()
    return f"{access.environment.pk}|{access.customer_id or ''}|{token_digest}|{expires_at}".encode()


def csrf_token(settings: Settings, access: WidgetAccess, *, now: float | None = None) -> str:
    expires_at = int((time.time() if now is None else now) + CSRF_LIFETIME_SECONDS)
    mac = hmac.new(_csrf_key(settings), _csrf_message(access, expires_at), hashlib.sha256).digest()
    return f"{expires_at}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def check_csrf(settings: Settings, access: WidgetAccess, token: str | None, origin: str | None) -> None:
    refused = Forbidden("This action's form has expired. Reload the widget.", code="invalid_csrf_token")
    # A browser always names the origin of a cross-site POST; ours comes from the frame itself.
    if origin and origin.rstrip("/") != origin_of(settings.public_url):
        raise refused
    try:
        expires_text, _ = (token or "").split(".", 1)
        expires_at = int(expires_text)
    except ValueError:
        raise refused from None
    if expires_at < time.time():
        raise refused
    mac = hmac.new(_csrf_key(settings), _csrf_message(access, expires_at), hashlib.sha256).digest()
    expected = f"{expires_at}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    if not hmac.compare_digest(expected, token or ""):
        raise refused


# ---- headers ------------------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def content_security_policy(frame_ancestors: tuple[str, ...], style_nonce: str | None = None) -> str:
    style = "style-src 'self'" + (f" 'nonce-{style_nonce}'" if style_nonce else "")
    ancestors = "*" if frame_ancestors == ("*",) else " ".join(("'self'", *frame_ancestors))
    return (
        "default-src 'none'; script-src 'self'; "
        f"{style}; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )


def widget_headers(frame_ancestors: tuple[str, ...], style_nonce: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(frame_ancestors, style_nonce),
        # Customer tokens travel in the frame's URL: never leak it to other sites.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Vary": "HX-Request",
    }
