"""The account behind a key, webhook endpoints and events."""

from __future__ import annotations

import secrets
from typing import Any

from app.sandbox.core import Ctx, apply_metadata, route, unset
from app.sandbox.fixtures import shaped
from app.sandbox.wire import StripeError, new_id


def account_object(ctx: Ctx, account_id: str) -> dict[str, Any]:
    account = ctx.store.get(account_id, account_id, "account")
    if account is None:
        raise StripeError(
            403 if account_id != ctx.account else 404,
            f"The provided key does not have access to account '{account_id}' (or that account does not exist). Application access may have been revoked.",
            type="invalid_request_error",
            code="account_invalid",
        )
    return account


def ensure_account(
    sandbox: Any, account_id: str, *, business_name: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """The account object of a key, created the first time the key is seen."""
    existing = sandbox.store.get(account_id, account_id, "account")
    if existing is not None:
        return existing
    name = business_name or f"Sandbox {account_id[-6:]}"
    account = shaped(
        "account",
        id=account_id,
        business_type="company",
        charges_enabled=True,
        country="US",
        created=sandbox.now(),
        default_currency="usd",
        details_submitted=True,
        email=email,
        metadata={},
        payouts_enabled=True,
        type="standard",
    )
    # Not in Stripe's account example, but asked of the sandbox: it is always test mode.
    account["livemode"] = False
    account["business_profile"] = {**(account.get("business_profile") or {}), "name": name}
    account["settings"] = account.get("settings") or {}
    account["settings"]["dashboard"] = {"display_name": name, "timezone": "Etc/UTC"}
    account["external_accounts"]["url"] = f"/v1/accounts/{account_id}/external_accounts"
    with sandbox.store.lock:
        sandbox.store.put(account_id, "account", account)
        # Committed at once: a key's account exists even if its first request fails.
        sandbox.store.commit()
    return account


@route("GET", "/v1/account", "AccountRetrieveCurrentParams")
def retrieve_current_account(ctx: Ctx, _: dict[str, Any], __: dict[str, str]) -> dict[str, Any]:
    return account_object(ctx, ctx.account)


@route("GET", "/v1/accounts/{id}", "AccountRetrieveParams")
def retrieve_account(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    account_id = path["id"]
    if account_id != ctx.account and account_id not in ctx.sandbox.connected_accounts(ctx.account):
        raise StripeError(
            403,
            f"The provided key does not have access to account '{account_id}' (or that account does not exist). Application access may have been revoked.",
            code="account_invalid",
        )
    return account_object(ctx, account_id)


# -- webhook endpoints ------------------------------------------------------------------------
@route("POST", "/v1/webhook_endpoints", "WebhookEndpointCreateParams")
def create_webhook_endpoint(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    endpoint = shaped(
        "webhook_endpoint",
        id=new_id("we_"),
        api_version=params.get("api_version"),
        created=ctx.now(),
        description=params.get("description"),
        enabled_events=params["enabled_events"],
        metadata=apply_metadata({}, params.get("metadata")),
        status="enabled",
        url=params["url"],
    )
    endpoint["secret"] = "whsec_" + secrets.token_urlsafe(32)
    # Connect endpoints get the events of connected accounts instead of the platform's own.
    endpoint["_connect"] = bool(params.get("connect", False))
    ctx.put(endpoint)
    return endpoint


@route("GET", "/v1/webhook_endpoints/{id}", "WebhookEndpointRetrieveParams")
def retrieve_webhook_endpoint(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    endpoint = ctx.get("webhook_endpoint", path["id"])
    endpoint.pop("secret", None)  # Stripe shows the secret only when the endpoint is created.
    return endpoint


@route("POST", "/v1/webhook_endpoints/{id}", "WebhookEndpointUpdateParams")
def update_webhook_endpoint(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    endpoint = ctx.get("webhook_endpoint", path["id"])
    for name in ("description", "enabled_events", "url"):
        if name in params:
            endpoint[name] = unset(params[name])
    if "disabled" in params:
        endpoint["status"] = "disabled" if params["disabled"] else "enabled"
    if "metadata" in params:
        endpoint["metadata"] = apply_metadata(endpoint.get("metadata"), params["metadata"])
    ctx.put(endpoint)
    endpoint.pop("secret", None)
    return endpoint


@route("GET", "/v1/webhook_endpoints", "WebhookEndpointListParams")
def list_webhook_endpoints(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    page = ctx.page("webhook_endpoint", params, "/v1/webhook_endpoints")
    for endpoint in page["data"]:
        endpoint.pop("secret", None)
    return page


@route("DELETE", "/v1/webhook_endpoints/{id}", "WebhookEndpointDeleteParams")
def delete_webhook_endpoint(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    endpoint = ctx.get("webhook_endpoint", path["id"])
    ctx.delete(endpoint["id"])
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


# -- events -----------------------------------------------------------------------------------
@route("GET", "/v1/events/{id}", "EventRetrieveParams")
def retrieve_event(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("event", path["id"])


@route("GET", "/v1/events", "EventListParams")
def list_events(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    types = set(params.get("types") or ([params["type"]] if "type" in params else []))

    def keep(event: dict[str, Any]) -> bool:
        if not types:
            return True
        return any(
            event["type"] == t or (t.endswith("*") and event["type"].startswith(t[:-1])) for t in types
        )

    return ctx.page("event", params, "/v1/events", keep, ("type", "types"))
