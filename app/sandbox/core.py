"""The sandbox's shared machinery: routes, the per-request context, events, expansion."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.sandbox.store import CUSTOMER_INDEXED
from app.sandbox.wire import StripeError, list_envelope, new_id, not_found, paginate_ids

if TYPE_CHECKING:
    from app.sandbox.server import Sandbox

Handler = Callable[["Ctx", dict[str, Any], dict[str, str]], dict[str, Any]]


@dataclass(slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    params: str | None  # stripe.params class, e.g. "CustomerCreateParams"
    handler: Handler


@dataclass
class Router:
    routes: list[Route] = field(default_factory=list)

    def add(self, method: str, template: str, params: str | None) -> Callable[[Handler], Handler]:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

        def register(handler: Handler) -> Handler:
            entry = Route(method, template, re.compile(regex), params, handler)
            # Literal paths (/v1/customers/search) must win over templated ones (/v1/customers/{id}).
            if "{" in template:
                self.routes.append(entry)
            else:
                self.routes.insert(0, entry)
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )


ROUTER = Router()
route = ROUTER.add

# Human names used in "No such ..." errors, per object type.
KIND_LABELS = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "coupon": "coupon",
    "promotion_code": "promotion code",
    "payment_method": "PaymentMethod",
    "setup_intent": "setupintent",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "checkout.session": "checkout.session",
    "billing_portal.configuration": "configuration",
    "billing_portal.session": "billing portal session",
    "webhook_endpoint": "webhook endpoint",
    "event": "event",
    "tax_rate": "tax rate",
    "tax_id": "tax id",
    "test_helpers.test_clock": "test clock",
}


class Ctx:
    """One request (or one clock tick) acting on one account."""

    def __init__(
        self,
        sandbox: Sandbox,
        account: str,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        api_version: str | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store
        self.account = account
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.api_version = api_version or sandbox.api_version
        # Set while time-driven work runs, so every object and event carries that moment.
        self.fixed_now: int | None = None

    # -- time ---------------------------------------------------------------------------------
    def now(self) -> int:
        return self.fixed_now if self.fixed_now is not None else self.sandbox.now()

    def now_for_customer(self, customer_id: str | None) -> int:
        """Objects of a customer attached to a test clock live at the clock's frozen time."""
        if self.fixed_now is not None:
            return self.fixed_now
        if customer_id:
            customer = self.store.get(self.account, customer_id, "customer")
            if customer and customer.get("test_clock"):
                clock = self.store.get(self.account, customer["test_clock"], "test_helpers.test_clock")
                if clock:
                    return int(clock["frozen_time"])
        return self.now()

    # -- objects ------------------------------------------------------------------------------
    def get(self, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        obj = self.store.get(self.account, object_id, kind)
        if obj is None:
            raise not_found(KIND_LABELS.get(kind, kind), object_id, param)
        return obj

    def find(self, kind: str, object_id: str | None) -> dict[str, Any] | None:
        if not object_id:
            return None
        return self.store.get(self.account, object_id, kind)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.put(self.account, obj["object"], obj)

    def delete(self, object_id: str) -> None:
        self.store.delete(self.account, object_id)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return self.store.list(self.account, kind)

    def of_customer(self, kind: str, customer_id: str) -> list[dict[str, Any]]:
        """One customer's objects of a customer-indexed type, newest first (no account scan)."""
        found = (
            self.store.get(self.account, i) for i in self.store.customer_ids(self.account, kind, customer_id)
        )
        return [obj for obj in found if obj is not None]

    def page(
        self,
        kind: str,
        params: dict[str, Any],
        url: str,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        filters: tuple[str, ...] | None = None,
    ) -> dict[str, Any]:
        """A list page; `keep` runs only when one of `filters` is a parameter (always when None)."""
        store = self.store
        customer = params.get("customer")
        if isinstance(customer, str) and customer and kind in CUSTOMER_INDEXED:
            ids = store.customer_ids(self.account, kind, customer)
        else:
            ids = store.peek_ids(self.account, kind)
        created = params.get("created")
        if isinstance(created, dict):
            ids = [i for i in ids if _in_range(store.peek(i).get("created", 0), created)]
        elif isinstance(created, int):
            ids = [i for i in ids if store.peek(i).get("created") == created]
        if keep is not None and (filters is None or any(name in params for name in filters)):
            ids = [i for i in ids if keep(store.peek(i))]
        # Paginate ids, then decode only the page.
        window, has_more = paginate_ids(ids, params, KIND_LABELS.get(kind, kind))
        found = [store.get(self.account, i) for i in window]
        return list_envelope([obj for obj in found if obj is not None], url, has_more)

    # -- events -------------------------------------------------------------------------------
    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        *,
        at: int | None = None,
    ) -> dict[str, Any]:
        from app.sandbox.server import public

        data: dict[str, Any] = {"object": public(obj)}
        if previous:
            data["previous_attributes"] = public(previous)
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "account": self.account,
            "api_version": self.api_version,
            "context": None,
            "created": at if at is not None else self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
            "type": event_type,
        }
        event["pending_webhooks"] = self.sandbox.webhooks.enqueue(self, event)
        self.put(event)
        return event


def _in_range(value: int, bounds: dict[str, Any]) -> bool:
    checks = {
        "gt": lambda b: value > b,
        "gte": lambda b: value >= b,
        "lt": lambda b: value < b,
        "lte": lambda b: value <= b,
    }
    return all(checks[k](int(v)) for k, v in bounds.items() if k in checks)


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's `previous_attributes`: the old values of the top-level fields that changed."""
    return {k: before.get(k) for k in after if k not in {"updated"} and before.get(k) != after.get(k)}


def apply_metadata(current: dict[str, Any] | None, update: Any) -> dict[str, Any]:
    """Stripe's metadata rules: '' clears all keys, a key set to '' is removed."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in (update or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def unset(value: Any) -> Any:
    """Form '' means "unset" in Stripe's API."""
    return None if value == "" else value


def expand(ctx: Ctx, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    for path in paths:
        _expand_path(ctx, obj, path.split("."), path)
    return obj


def _expand_path(ctx: Ctx, node: Any, parts: list[str], full: str) -> None:
    if not isinstance(node, dict):
        return
    if node.get("object") in {"list", "search_result"} and parts[0] == "data":
        for item in node.get("data", []):
            _expand_path(ctx, item, parts[1:], full) if len(parts) > 1 else None
        return
    key = parts[0]
    if key not in node:
        include = INCLUDABLE.get((node.get("object", ""), key))
        if include is None:
            raise StripeError(400, f"This property cannot be expanded ({full}).", param="expand")
        node[key] = include(ctx, node)
    value = node[key]
    if isinstance(value, str):
        found = ctx.store.get(ctx.account, value)
        if found is not None:
            node[key] = found
    elif isinstance(value, list):
        node[key] = [(ctx.store.get(ctx.account, v) or v) if isinstance(v, str) else v for v in value]
    if len(parts) > 1:
        child = node[key]
        for item in child if isinstance(child, list) else [child]:
            _expand_path(ctx, item, parts[1:], full)


def _customer_list(
    kind: str, url: str, keep: Callable[[dict[str, Any], str], bool]
) -> Callable[[Ctx, dict[str, Any]], dict[str, Any]]:
    def include(ctx: Ctx, customer: dict[str, Any]) -> dict[str, Any]:
        found = [o for o in ctx.of_customer(kind, customer["id"]) if keep(o, customer["id"])]
        return {
            "object": "list",
            "data": found,
            "has_more": False,
            "total_count": len(found),
            "url": url.format(id=customer["id"]),
        }

    return include


# Fields Stripe leaves out of an object unless asked for with `expand[]` (includable fields).
INCLUDABLE: dict[tuple[str, str], Callable[[Ctx, dict[str, Any]], Any]] = {
    ("customer", "subscriptions"): _customer_list(
        "subscription",
        "/v1/customers/{id}/subscriptions",
        lambda s, c: s["customer"] == c and s["status"] != "canceled",
    ),
    ("customer", "tax_ids"): _customer_list(
        "tax_id", "/v1/customers/{id}/tax_ids", lambda t, c: t["customer"] == c
    ),
}


def utc_now() -> int:
    return int(time.time())
