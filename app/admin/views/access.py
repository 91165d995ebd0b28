"""Sign in, sign out."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth import TooManyAttempts, session_fingerprint, sign_in
from app.admin.context import (
    SESSION_ENV,
    SESSION_EXPIRES,
    SESSION_FINGERPRINT,
    SESSION_OPERATOR,
    safe_next,
    signed_in_operator_pk,
)
from app.admin.forms import text
from app.admin.rendering import redirect, render
from app.admin.security import SESSION_SECONDS
from app.core.errors import Unauthorized


def _login_page(
    request: Request[Any, Any, Any],
    next_url: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    return render(
        request,
        "admin/login.html",
        {"next": next_url, "email": email, "error": error},
        status_code=status,
        headers=headers,
    )


@get("/login", opt={"public": True}, name="admin:login")
async def login_form(request: Request[Any, Any, Any]) -> Response[str]:
    target = safe_next(request.query_params.get("next"))
    if signed_in_operator_pk(request) is not None:
        return redirect(request, target)
    return _login_page(request, target)


@post("/login", opt={"public": True})
async def login(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[str]:
    form = await request.form()
    email = text(form, "email") or ""
    target = safe_next(text(form, "next"))
    client_ip = request.client.host if request.client else "unknown"
    try:
        operator = await sign_in(db_session, email, str(form.get("password") or ""), client_ip)
    except TooManyAttempts as exc:
        retry_after = str(exc.extra.get("retry_after", 900))
        return _login_page(
            request, target, email=email, error=exc.message, status=429, headers={"Retry-After": retry_after}
        )
    except Unauthorized as exc:
        # The failure row is kept (no rollback): it is what the rate limit counts.
        return _login_page(request, target, email=email, error=exc.message, status=401)
    previous_env = request.session.get(SESSION_ENV)
    # A fresh session on sign-in: nothing set before authentication carries over.
    request.clear_session()
    request.set_session(
        {
            SESSION_OPERATOR: operator.pk,
            SESSION_FINGERPRINT: session_fingerprint(operator),
            SESSION_EXPIRES: int(time.time()) + SESSION_SECONDS,
            **({SESSION_ENV: previous_env} if isinstance(previous_env, str) else {}),
        }
    )
    return redirect(request, target)


@post("/logout", name="admin:logout")
async def logout(request: Request[Any, Any, Any]) -> Response[str]:
    request.clear_session()
    return redirect(request, "/admin/login")


ACCESS_HANDLERS = [login_form, login, logout]
