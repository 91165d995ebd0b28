"""How the console answers refusals: HTML pages (never problem+json), and redirects to sign in."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from sqlalchemy.exc import IntegrityError

from app.admin.context import LoginRequired, NoEnvironment, signed_in_operator_pk
from app.admin.rendering import html_response, is_htmx, redirect, render
from app.core.errors import TollgateError

logger = logging.getLogger("tollgate.admin")

LOGIN_PATH = "/admin/login"


def _current_location(request: Request[Any, Any, Any]) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def login_redirect(request: Request[Any, Any, Any]) -> Response[str]:
    """To the login page, coming back afterwards to the page that was asked for (GETs only)."""
    target = _current_location(request) if request.method == "GET" else "/admin"
    location = LOGIN_PATH + ("?" + urlencode({"next": target}) if target not in ("/admin", "/admin/") else "")
    if is_htmx(request):
        # A fragment request cannot show the login page inside the console: reload the whole page.
        return html_response("", 401, {"HX-Redirect": location})
    return Response("", status_code=303, headers={"Location": location})


async def require_sign_in(request: Request[Any, Any, Any]) -> Response[str] | None:
    """Runs before every console handler: nothing but the login page is served to strangers."""
    if request.route_handler.opt.get("public"):
        return None
    if signed_in_operator_pk(request) is None:
        return login_redirect(request)
    return None


def error_page(request: Request[Any, Any, Any], status: int, title: str, message: str) -> Response[str]:
    signed_in = signed_in_operator_pk(request) is not None
    return render(
        request,
        "admin/error.html",
        {"status": status, "title": title, "message": message, "signed_in": signed_in},
        status_code=status,
    )


def _on_login_required(request: Request[Any, Any, Any], _: LoginRequired) -> Response[str]:
    return login_redirect(request)


def _on_no_environment(request: Request[Any, Any, Any], _: NoEnvironment) -> Response[str]:
    return redirect(request, "/admin/environments/_new")


def _on_tollgate_error(request: Request[Any, Any, Any], exc: TollgateError) -> Response[str]:
    titles = {404: "Not found", 409: "Conflict", 429: "Too many attempts"}
    return error_page(request, exc.status_code, titles.get(exc.status_code, "Refused"), exc.message)


def _on_forbidden(request: Request[Any, Any, Any], _: PermissionDeniedException) -> Response[str]:
    # Litestar's CSRF middleware raises this when the token is missing or wrong.
    return error_page(
        request,
        403,
        "Form expired",
        "This request did not carry a valid security token, so nothing was changed. "
        "Reload the page and try again.",
    )


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    if isinstance(exc, NotFoundException):
        return error_page(request, 404, "Not found", "There is nothing at this address.")
    if isinstance(exc, ValidationException):
        return error_page(request, 400, "Bad request", "The address has a value that is not valid here.")
    return error_page(request, exc.status_code, "Refused", str(exc.detail))


def _on_integrity_error(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[str]:
    logger.info("integrity conflict in the console: %s", exc.orig)
    return error_page(request, 409, "Conflict", "Someone changed this at the same time. Reload and retry.")


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    logger.exception("unhandled error in the console", exc_info=exc)
    return error_page(request, 500, "Something went wrong", "The error was logged. Try again in a moment.")


ADMIN_EXCEPTION_HANDLERS: dict[Any, Any] = {
    LoginRequired: _on_login_required,
    NoEnvironment: _on_no_environment,
    TollgateError: _on_tollgate_error,
    PermissionDeniedException: _on_forbidden,
    HTTPException: _on_http_error,
    ValidationException: _on_http_error,
    NotFoundException: _on_http_error,
    IntegrityError: _on_integrity_error,
    Exception: _on_unexpected,
}
