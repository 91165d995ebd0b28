"""The sandbox as one ASGI application: the Stripe API, the control API and the hosted pages.

A plain ASGI app (no framework) keeps the request path short: the sandbox answers hundreds of
requests a second on a small machine, standalone (`tollgate sandbox`) or mounted in Tollgate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import stripe

from app.sandbox.core import ROUTER, Ctx, Route, expand
from app.sandbox.faults import DEFAULT_RATE_LIMIT, Faults

# Importing the resource modules registers their routes.
from app.sandbox.resources import billing, catalog, checkout, customers, platform  # noqa: F401
from app.sandbox.store import Store
from app.sandbox.validation import validate
from app.sandbox.webhooks import DELIVERY_KIND, WebhookDispatcher
from app.sandbox.wire import StripeError, new_id, parse_form

logger = logging.getLogger("tollgate.sandbox")

IDEMPOTENCY_KIND = "_idempotency"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
CONNECTION_KIND = "_connection"
TICK_SECONDS = 5.0
MAX_BODY_BYTES = 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, msgspec.json.encode(data), "application/json", headers or {})


def public(value: Any) -> Any:
    """An object without the sandbox's private bookkeeping fields (names starting with `_`)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def account_for_key(key: str) -> str:
    """Every API key is its own sandbox account, like separate Stripe accounts."""
    return "acct_" + hashlib.sha256(key.encode()).hexdigest()[:16].upper()


class Sandbox:
    def __init__(
        self, database_path: str | Path | None, public_url: str, *, api_version: str | None = None
    ) -> None:
        self.store = Store(database_path)
        self.public_url = public_url.rstrip("/")
        self.api_version = api_version or stripe.api_version
        self.clock_offset = 0
        self.faults = Faults()
        self.webhooks = WebhookDispatcher(self)
        self._tasks: list[asyncio.Task[None]] = []
        from app.sandbox.hosted import Hosted

        self.hosted = Hosted(self)

    # -- time and accounts --------------------------------------------------------------------
    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def account_name(self, account_id: str) -> str | None:
        account = self.store.get(account_id, account_id, "account")
        return ((account or {}).get("business_profile") or {}).get("name")

    def connected_accounts(self, platform_account: str) -> set[str]:
        return {c["connected"] for c in self.store.list(platform_account, CONNECTION_KIND)}

    def authenticate(self, headers: dict[str, str]) -> tuple[str, str]:
        """(key, account) of a request, or Stripe's 401."""
        auth = headers.get("authorization", "")
        key = ""
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
            )
        if key.startswith(("sk_live_", "rk_live_")):
            raise StripeError(
                401,
                "The Stripe sandbox only runs in test mode: live keys (sk_live_...) are refused. Use any sk_test_... key.",
                code="livemode_mismatch",
            )
        if not key.startswith(("sk_test_", "rk_test_")) or len(key) < 12:
            raise StripeError(
                401, f"Invalid API Key provided: {key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}"
            )
        return key, account_for_key(key)

    # -- background work ----------------------------------------------------------------------
    def start_background(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.webhooks.run()), loop.create_task(self._tick_forever())]

    async def stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:  # one bad object must not stop renewals for everyone
                logger.exception("sandbox tick failed")

    def tick(self) -> int:
        """Run everything due at the sandbox clock's time for customers without a test clock."""
        steps = 0
        for account in sorted(self.store.accounts()):
            with self.store.lock:
                ctx = Ctx(self, account)
                try:
                    steps += billing.process_due(ctx, self.now(), clock_id=None)
                    self.store.commit()
                except Exception:
                    self.store.rollback()
                    raise
        return steps

    # -- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.start_background()
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        # Litestar's mount hands over "/v1/products/" for "/v1/products": one canonical form.
        path = path.rstrip("/") or "/"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await self._send(
                    send,
                    json_response(
                        413,
                        {"error": {"type": "invalid_request_error", "message": "Request body too large."}},
                    ),
                )
                return
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        query = scope.get("query_string", b"").decode("latin-1")
        client_host = (scope.get("client") or ("", 0))[0]
        if path.startswith("/_sandbox/") and client_host not in LOOPBACK_HOSTS:
            # The control API can wipe state: only this machine may use it.
            await self._send(
                send,
                json_response(
                    403,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "message": "The sandbox control API only answers requests from this machine.",
                        }
                    },
                ),
            )
            return
        try:
            response = await self.handle(method, path, query, headers, body)
        except Exception:
            logger.exception("sandbox failed on %s %s", method, path)
            response = json_response(
                500, {"error": {"type": "api_error", "message": "The sandbox hit an internal error."}}
            )
        await self._send(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_background()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        if path.startswith("/v1/"):
            return await self.api(method, path, query, headers, body)
        if path.startswith("/_sandbox/"):
            from app.sandbox.control import control

            return await control(self, method, path, query, body)
        if path == "/oauth/token" or path == "/oauth/deauthorize":
            return self.hosted.oauth_api(path, headers, body)
        return self.hosted.page(method, path, query, body)

    # -- the Stripe API -----------------------------------------------------------------------
    async def api(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Response:
        request_id = new_id("req_", 14)
        response_headers = {
            "Request-Id": request_id,
            "Stripe-Version": headers.get("stripe-version") or self.api_version,
        }
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key:
            response_headers["Idempotency-Key"] = idempotency_key
        try:
            _, account = self.authenticate(headers)
            delay, fault = self.faults.check(method, path, account)
            if delay:
                await asyncio.sleep(delay)
            if fault is not None:
                raise fault
            target = headers.get("stripe-account")
            if target and target != account:
                if target not in self.connected_accounts(account):
                    raise StripeError(
                        403,
                        f"The provided key does not have access to account '{target}' (or that account does not exist). Application access may have been revoked.",
                        code="account_invalid",
                    )
                account = target
            platform.ensure_account(self, account)
            raw = parse_form(query if method == "GET" else (body.decode() or query))
            route, path_args = ROUTER.match(method, path)
            params = validate(route.params, raw) if route.params else raw
            fingerprint = ""
            if idempotency_key and method != "GET":
                fingerprint = hashlib.sha256(
                    msgspec.json.encode([method, path, raw], order="sorted")
                ).hexdigest()
                replay = self._replay(account, idempotency_key, fingerprint)
                if replay is not None:
                    replay.headers.update(
                        {
                            **response_headers,
                            "Idempotent-Replayed": "true",
                            "Original-Request": replay.headers.get("Request-Id", ""),
                        }
                    )
                    return replay
            return self._execute(
                account,
                route,
                params,
                path_args,
                request_id,
                idempotency_key,
                fingerprint,
                response_headers,
                headers,
            )
        except StripeError as error:
            return json_response(error.status, error.body(request_id), response_headers)

    def _execute(
        self,
        account: str,
        route: Route,
        params: dict[str, Any],
        path_args: dict[str, str],
        request_id: str,
        idempotency_key: str | None,
        fingerprint: str,
        response_headers: dict[str, str],
        headers: dict[str, str],
    ) -> Response:
        store = self.store
        with store.lock:
            ctx = Ctx(
                self,
                account,
                request_id=request_id,
                idempotency_key=idempotency_key,
                api_version=headers.get("stripe-version"),
            )
            try:
                result = route.handler(ctx, params, path_args)
                expand(ctx, result, params.get("expand") or [])
                status, data = 200, result
            except StripeError as error:
                store.rollback()
                status, data = error.status, error.body(request_id)
            except Exception:
                store.rollback()
                raise
            body = msgspec.json.encode(data)
            if b'"_' in body:  # private bookkeeping fields somewhere: strip them (rarely needed)
                body = msgspec.json.encode(public(data))
            if fingerprint and idempotency_key:
                # Like Stripe, a request that started executing is remembered, errors included.
                store.put(
                    account,
                    IDEMPOTENCY_KIND,
                    {
                        "id": f"idem:{account}:{idempotency_key}",
                        "fingerprint": fingerprint,
                        "status": status,
                        "body": body.decode(),
                        "request_id": request_id,
                        "created": self.now(),
                    },
                )
            store.commit()
        return Response(status, body, "application/json", response_headers)

    def _replay(self, account: str, key: str, fingerprint: str) -> Response | None:
        record = self.store.get(account, f"idem:{account}:{key}", IDEMPOTENCY_KIND)
        if record is None or record["created"] + IDEMPOTENCY_TTL_SECONDS < self.now():
            return None
        if record["fingerprint"] != fingerprint:
            raise StripeError(
                400,
                f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        return Response(
            record["status"],
            record["body"].encode(),
            "application/json",
            {"Request-Id": record["request_id"]},
        )

    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
        self.faults.reset()
        self.webhooks.reset()
        self.clock_offset = 0

    def deliveries(self, account: str | None = None) -> list[dict[str, Any]]:
        accounts = [account] if account else sorted(self.store.accounts())
        found: list[dict[str, Any]] = []
        for name in accounts:
            for delivery in self.store.list(name, DELIVERY_KIND):
                found.append({**delivery, "account": name})
        return sorted(found, key=lambda d: d["created"])


def create_sandbox_app(database_path: str | Path | None, public_url: str) -> Sandbox:
    """The sandbox ASGI app; `public_url` is where its hosted pages are reachable."""
    return Sandbox(database_path, public_url)


def create_standalone_sandbox(port: int = 12111, database_path: str | None = None) -> Sandbox:
    from app.settings import VAR_DIR

    path = database_path or VAR_DIR / "sandbox.db"
    logger.info("Stripe sandbox on http://127.0.0.1:%d (state in %s)", port, path)
    return Sandbox(path, f"http://127.0.0.1:{port}")


__all__ = ["DEFAULT_RATE_LIMIT", "Sandbox", "create_sandbox_app", "create_standalone_sandbox"]
