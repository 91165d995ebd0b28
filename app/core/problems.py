"""Every error leaves Tollgate as RFC 9457 problem+json with a stable `code`.

Domain errors carry their own code; framework errors (bad JSON, wrong types, unknown route,
oversize body) are given one here, so no client ever has to parse a message.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core.errors import TollgateError

logger = logging.getLogger("tollgate.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "route_not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://tollgate.dev/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def handle_tollgate_error(_: Request[Any, Any, Any], exc: TollgateError) -> Response[dict[str, Any]]:
    return problem(exc.status_code, exc.code, exc.message, param=exc.param, **exc.extra)


def handle_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    detail = str(exc.detail)
    # msgspec says where the bad value was ("... - at `$.planId`"): keep that, it is the useful part.
    params: list[str] = []
    for err in errors:
        if isinstance(err, dict) and err.get("key"):
            params.append(str(err["key"]))
        if isinstance(err, dict) and err.get("message"):
            detail = str(err["message"])
    code = (
        "malformed_json"
        if "malformed" in detail.lower() or "json is" in detail.lower()
        else "invalid_request"
    )
    return problem(400, code, detail, param=params[0] if params else None, errors=errors or None)


def handle_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    detail = str(exc.detail) if exc.detail else code.replace("_", " ")
    if isinstance(exc, NotFoundException) and detail == "Not Found":
        detail = "No such endpoint. See /schema for the API."
    return problem(status, code, detail)


def handle_integrity_error(_: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, Any]]:
    # A race lost to a concurrent writer of the same unique key: the client may retry.
    logger.info("integrity conflict: %s", exc.orig)
    return problem(
        409, "conflict", "The change conflicts with another change made at the same time. Retry it."
    )


# What databases say when a transaction waited too long for another one: nothing was written,
# the same request succeeds a moment later.
_BUSY = ("database is locked", "deadlock detected", "lock timeout", "could not serialize access")


def handle_database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    if any(sign in str(exc.orig).lower() for sign in _BUSY):
        logger.warning("database busy: %s", exc.orig)
        response = problem(503, "database_busy", "The database is busy with other changes. Retry shortly.")
        response.headers["Retry-After"] = "1"
        return response
    return handle_unexpected_error(request, exc)


def handle_unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("unhandled error", exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    TollgateError: handle_tollgate_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_error,
    IntegrityError: handle_integrity_error,
    DBAPIError: handle_database_error,
    Exception: handle_unexpected_error,
}
