"""Domain errors. Services raise these; one handler in app.main renders them as problem+json.

Each error carries a stable machine-readable `code` that clients may switch on, and a
message written for a person.
"""

from __future__ import annotations

from typing import Any


class TollgateError(Exception):
    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.param = param
        self.extra = extra or {}


class InvalidRequest(TollgateError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(TollgateError):
    status_code = 401
    code = "unauthorized"


class Forbidden(TollgateError):
    status_code = 403
    code = "forbidden"


class NotFound(TollgateError):
    status_code = 404
    code = "not_found"


class Conflict(TollgateError):
    status_code = 409
    code = "conflict"


class Unprocessable(TollgateError):
    """The request is well formed but breaks a business rule."""

    status_code = 422
    code = "unprocessable"


def not_found(entity: str, key: str) -> NotFound:
    """`plan_not_found` etc.: the code names the entity so clients can tell them apart."""
    return NotFound(f"No {entity.replace('_', ' ')} with id '{key}' exists in this environment.", code=f"{entity}_not_found")
