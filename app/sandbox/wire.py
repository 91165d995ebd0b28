"""Stripe's wire format: bracket form parameters, list envelopes, error bodies, object ids."""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import parse_qsl

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: a type prefix and random base62 characters."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class StripeError(Exception):
    """An API error rendered as Stripe's `{"error": {...}}` body with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        error.update(self.extra)
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def parse_form(raw: str) -> dict[str, Any]:
    """Bracket-encoded form -> nested dicts; `a[]` appends to a list, `a[0]` keys stay dict keys.

    Numeric keys are kept as dict keys here; the validator turns them into lists where the
    parameter's type is a list, so `metadata[0]=x` stays a valid metadata key.
    """
    result: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        _assign(result, _split_key(key), value)
    return result


def _split_key(key: str) -> list[str]:
    if "[" not in key or not key.endswith("]"):
        return [key]
    head, _, rest = key.partition("[")
    parts = [head, *rest[:-1].split("][")]
    return parts


def _assign(target: dict[str, Any], parts: list[str], value: str) -> None:
    node = target
    for index, part in enumerate(parts):
        if part == "":
            # `a[]` means "the next element": give it the next free numeric key.
            part = str(len(node))
        if index == len(parts) - 1:
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


def list_envelope(data: list[dict[str, Any]], url: str, has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def paginate(
    items: list[dict[str, Any]], params: dict[str, Any], url: str, kind: str = "object"
) -> dict[str, Any]:
    """Slice a newest-first list with Stripe's limit / starting_after / ending_before."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise StripeError(
            400,
            "Invalid limit: must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    ids = [item["id"] for item in items]
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after:
        if starting_after not in ids:
            raise not_found(kind, starting_after, "starting_after")
        start = ids.index(starting_after) + 1
        window = items[start : start + limit]
        has_more = start + limit < len(items)
    elif ending_before:
        if ending_before not in ids:
            raise not_found(kind, ending_before, "ending_before")
        end = ids.index(ending_before)
        window = items[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        window = items[:limit]
        has_more = len(items) > limit
    return list_envelope(window, url, has_more)
