"""Session cookie, CSRF and response headers of the console, keyed from `settings.secret`.

The admin router is a module-level object while the secret is only known when the app is
built, so the two middlewares below build Litestar's own session and CSRF middlewares on
their first request from the app's settings (one instance per app and route).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.config.csrf import CSRFConfig
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from app.settings import Settings

SESSION_COOKIE = "tollgate_admin"
CSRF_COOKIE = "tollgate_csrf"
CSRF_HEADER = "x-csrftoken"
CSRF_FIELD = "_csrf_token"  # the form field name Litestar's CSRF middleware reads
# An absolute lifetime, checked against the time stored inside the encrypted session too,
# so a copied cookie stops working even if a client ignores the cookie's expiry.
SESSION_SECONDS = 12 * 3600
ADMIN_PATH = "/admin"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def derive_key(secret: str, purpose: str) -> bytes:
    """A key for one purpose from the master secret: one leaked key does not give the others."""
    return hmac.new(secret.encode(), f"tollgate/admin/{purpose}".encode(), hashlib.sha256).digest()


def is_https(settings: Settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def session_config(settings: Settings) -> CookieBackendConfig:
    # Litestar's cookie backend encrypts and authenticates the session with AES-GCM.
    return CookieBackendConfig(
        secret=derive_key(settings.secret, "session"),
        key=SESSION_COOKIE,
        path=ADMIN_PATH,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=is_https(settings),
    )


def csrf_config(settings: Settings) -> CSRFConfig:
    return CSRFConfig(
        secret=derive_key(settings.secret, "csrf").hex(),
        cookie_name=CSRF_COOKIE,
        cookie_path=ADMIN_PATH,
        cookie_httponly=True,  # pages carry the token in a meta tag and hidden inputs
        cookie_samesite="lax",
        cookie_secure=is_https(settings),
        header_name=CSRF_HEADER,
    )


def _settings_of(scope: Scope) -> Settings:
    return scope["litestar_app"].state["settings"]


class AdminSessionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inner: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._inner is None:
            config = session_config(_settings_of(scope))
            self._inner = SessionMiddleware(app=self.app, backend=ClientSideSessionBackend(config=config))
        await self._inner(scope, receive, send)


class AdminCSRFMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inner: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._inner is None:
            self._inner = CSRFMiddleware(app=self.app, config=csrf_config(_settings_of(scope)))
        await self._inner(scope, receive, send)


def security_headers() -> dict[str, Any]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
