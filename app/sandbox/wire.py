"""Stripe's wire format: bracket form parameters, list envelopes, error bodies, object ids."""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import parse_qsl

_ID_ALPHABET = string.ascii_letters + string.digits


# Random bytes -> base62 characters in one C call (the slight modulo bias is harmless for ids).
_BYTE_TO_CHAR = bytes(ord(_ID_ALPHABET[i % len(_ID_ALPHABET)]) for i in range(256))


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: a type prefix and random base62 characters."""
    return prefix + secrets.token_bytes(length).translate(_BYTE_TO_CHAR).decode()


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


def paginate_ids(ids: list[str], params: dict[str, Any], kind: str = "object") -> tuple[list[str], bool]:
    """The window of a newest-first id list for limit / starting_after / ending_before."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise StripeError(
            400,
            "Invalid limit: must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after:
        try:
            start = ids.index(starting_after) + 1
        except ValueError:
            raise not_found(kind, starting_after, "starting_after") from None
        return ids[start : start + limit], start + limit < len(ids)
    if ending_before:
        try:
            end = ids.index(ending_before)
        except ValueError:
            raise not_found(kind, ending_before, "ending_before") from None
        return ids[max(0, end - limit) : end], end - limit > 0
    return ids[:limit], len(ids) > limit


def paginate(
    items: list[dict[str, Any]], params: dict[str, Any], url: str, kind: str = "object"
) -> dict[str, Any]:
    """Slice a newest-first list of objects with Stripe's limit / starting_after / ending_before."""
    by_id = {item["id"]: item for item in items}
    window, has_more = paginate_ids([item["id"] for item in items], params, kind)
    return list_envelope([by_id[i] for i in window], url, has_more)
