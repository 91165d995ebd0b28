"""The sandbox control API (JSON under /_sandbox/): reset, faults, clock, webhook deliveries.

It is for tests and demos on the user's own machine, like the rest of the sandbox, and so
takes no key.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec

from app.sandbox.core import Ctx
from app.sandbox.faults import DEFAULT_RATE_LIMIT
from app.sandbox.resources import billing, platform

if TYPE_CHECKING:
    from app.sandbox.server import Response, Sandbox


def _error(status: int, message: str) -> Response:
    from app.sandbox.server import json_response

    return json_response(status, {"error": {"type": "invalid_request_error", "message": message}})


async def control(sandbox: Sandbox, method: str, path: str, query: str, body: bytes) -> Response:
    from app.sandbox.server import account_for_key, json_response

    try:
        data: dict[str, Any] = msgspec.json.decode(body) if body.strip() else {}
    except msgspec.DecodeError:
        return _error(400, "The control API takes JSON bodies.")
    if not isinstance(data, dict):
        return _error(400, "The control API takes a JSON object.")
    args = dict(parse_qsl(query))
    route = (method, path.rstrip("/"))

    if route == ("GET", "/_sandbox/status"):
        return json_response(
            200,
            {
                "now": sandbox.now(),
                "clock_offset": sandbox.clock_offset,
                "accounts": sorted(a for a in sandbox.store.accounts() if a.startswith("acct_")),
                "pending_webhook_deliveries": sandbox.webhooks.pending_count(),
                "rate_limit": sandbox.faults.rate_limit,
                "peak_requests_per_second": sandbox.faults.peak_per_second,
                "rate_limited": sandbox.faults.rate_limited,
                "faults": [r.public() for r in sandbox.faults.rules],
            },
        )
    if route == ("POST", "/_sandbox/reset"):
        sandbox.reset()
        return json_response(200, {"reset": True})

    # -- faults -------------------------------------------------------------------------------
    if route == ("GET", "/_sandbox/faults"):
        return json_response(200, {"data": [r.public() for r in sandbox.faults.rules]})
    if route == ("POST", "/_sandbox/faults"):
        try:
            rule = sandbox.faults.add(data)
        except (TypeError, ValueError) as error:
            return _error(400, str(error))
        return json_response(200, rule.public())
    if route == ("DELETE", "/_sandbox/faults"):
        sandbox.faults.rules = []
        return json_response(200, {"deleted": True})
    if method == "DELETE" and path.startswith("/_sandbox/faults/"):
        removed = sandbox.faults.remove(path.rsplit("/", 1)[-1])
        return json_response(200 if removed else 404, {"deleted": removed})
    if route == ("PUT", "/_sandbox/rate_limit"):
        enabled = bool(data.get("enabled", True))
        sandbox.faults.rate_limit = (
            float(data.get("requests_per_second", DEFAULT_RATE_LIMIT)) if enabled else None
        )
        # Setting a limit starts a new measurement of what clients do under it.
        sandbox.faults.peak_per_second = sandbox.faults.rate_limited = 0
        return json_response(200, {"enabled": enabled, "requests_per_second": sandbox.faults.rate_limit})
    if route == ("PUT", "/_sandbox/webhook_faults"):
        try:
            faults = sandbox.faults.set_webhook_faults(data)
        except TypeError as error:
            return _error(400, str(error))
        return json_response(200, dataclasses.asdict(faults))
    if route == ("PUT", "/_sandbox/webhook_retry"):
        sandbox.webhooks.retry_base_seconds = float(
            data.get("base_seconds", sandbox.webhooks.retry_base_seconds)
        )
        sandbox.webhooks.max_attempts = int(data.get("max_attempts", sandbox.webhooks.max_attempts))
        return json_response(
            200,
            {
                "base_seconds": sandbox.webhooks.retry_base_seconds,
                "max_attempts": sandbox.webhooks.max_attempts,
            },
        )

    # -- webhook deliveries -------------------------------------------------------------------
    if route == ("GET", "/_sandbox/webhook_deliveries"):
        found = sandbox.deliveries(args.get("account"))
        for name in ("event", "endpoint", "status", "event_type"):
            if name in args:
                found = [d for d in found if d.get(name) == args[name]]
        return json_response(200, {"data": found})
    if route == ("POST", "/_sandbox/webhook_deliveries/drain"):
        drained = await sandbox.webhooks.drain(
            float(data.get("timeout", 5)), account=data.get("account"), endpoint=data.get("endpoint")
        )
        return json_response(200, {"drained": drained, "pending": sandbox.webhooks.pending_count()})

    # -- time ---------------------------------------------------------------------------------
    if route == ("GET", "/_sandbox/clock"):
        return json_response(200, {"now": sandbox.now(), "clock_offset": sandbox.clock_offset})
    if route == ("POST", "/_sandbox/clock/advance"):
        if "to" in data:
            target = int(data["to"])
            if target < sandbox.now():
                return _error(400, "The sandbox clock cannot go back in time.")
            sandbox.clock_offset += target - sandbox.now()
        else:
            seconds = int(data.get("seconds", 0))
            if seconds < 0:
                return _error(400, "The sandbox clock cannot go back in time.")
            sandbox.clock_offset += seconds
        steps = sandbox.tick()
        return json_response(
            200, {"now": sandbox.now(), "clock_offset": sandbox.clock_offset, "steps": steps}
        )
    if route == ("POST", "/_sandbox/tick"):
        return json_response(200, {"steps": sandbox.tick(), "now": sandbox.now()})

    # -- accounts -----------------------------------------------------------------------------
    if route == ("POST", "/_sandbox/accounts"):
        key = str(data.get("key", ""))
        if not key.startswith(("sk_test_", "rk_test_")):
            return _error(400, "`key` must be an sk_test_ or rk_test_ key.")
        account_id = account_for_key(key)
        with sandbox.store.lock:
            account = platform.ensure_account(
                sandbox, account_id, business_name=data.get("business_name"), email=data.get("email")
            )
            if data.get("business_name"):
                account["business_profile"]["name"] = data["business_name"]
                account["settings"]["dashboard"]["display_name"] = data["business_name"]
                sandbox.store.put(account_id, "account", account)
            sandbox.store.commit()
        return json_response(200, account)
    if route == ("POST", "/_sandbox/process_due"):
        # Run due work for one account at a given time (mainly for demos of test clocks).
        account = str(data.get("account", ""))
        with sandbox.store.lock:
            steps = billing.process_due(
                Ctx(sandbox, account), int(data.get("until", sandbox.now())), clock_id=None
            )
            sandbox.store.commit()
        return json_response(200, {"steps": steps})
    return _error(404, f"Unknown control endpoint: {method} {path}")
