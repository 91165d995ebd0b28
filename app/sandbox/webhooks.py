"""Webhook delivery: signed like Stripe, sent in the background, retried with backoff.

Each (event, endpoint) pair is a delivery record kept in the store, so deliveries survive a
restart and tests can read every attempt through the control API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import msgspec

from app.sandbox.wire import new_id

if TYPE_CHECKING:
    from app.sandbox.core import Ctx
    from app.sandbox.server import Sandbox

logger = logging.getLogger("tollgate.sandbox.webhooks")

DELIVERY_KIND = "_webhook_delivery"
PLATFORM_LINK_KIND = "_platform"  # kept in a connected account: the platform it is connected to


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature` header: t=<unix time>,v1=<HMAC-SHA256 of "t.payload">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def wants(endpoint: dict[str, Any], event_type: str) -> bool:
    if endpoint.get("status") != "enabled":
        return False
    enabled = endpoint.get("enabled_events") or []
    return "*" in enabled or event_type in enabled


class WebhookDispatcher:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.retry_base_seconds = 1.0
        self.max_attempts = 5
        self.timeout_seconds = 5.0
        # delivery id -> (account, endpoint id, due on the monotonic clock)
        self._pending: dict[str, tuple[str, str, float]] = {}
        self._in_flight: dict[str, tuple[str, str]] = {}
        self._wake: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        store = sandbox.store
        for account in store.accounts():
            for delivery in store.list(account, DELIVERY_KIND):
                if delivery["status"] == "pending":
                    self._pending[delivery["id"]] = (account, delivery["endpoint"], time.monotonic())

    def reset(self) -> None:
        self._pending.clear()
        self._in_flight.clear()

    # -- enqueue (inside a request) -----------------------------------------------------------
    def enqueue(self, ctx: Ctx, event: dict[str, Any]) -> int:
        faults = self.sandbox.faults.webhooks
        rng = self.sandbox.faults.webhook_rng
        count = 0
        targets = [(ctx.account, e) for e in ctx.all("webhook_endpoint") if not e.get("_connect")]
        for link in ctx.store.list(ctx.account, PLATFORM_LINK_KIND):
            platform = link["platform"]
            targets += [
                (platform, e) for e in ctx.store.list(platform, "webhook_endpoint") if e.get("_connect")
            ]
        for owner, endpoint in targets:
            if not wants(endpoint, event["type"]):
                continue
            count += 1
            delivery = {
                "id": new_id("whdel_"),
                "object": DELIVERY_KIND,
                "event": event["id"],
                "event_type": event["type"],
                "endpoint": endpoint["id"],
                "url": endpoint["url"],
                "status": "pending",
                "created": time.time(),
                "attempts": [],
                "copies": 1,
            }
            if faults.drop and rng.random() < faults.drop:
                delivery["status"] = "dropped"
            elif faults.duplicate and rng.random() < faults.duplicate:
                delivery["copies"] = 2
            delivery["event_account"] = ctx.account
            ctx.store.put(owner, DELIVERY_KIND, delivery)
            if delivery["status"] == "pending":
                due = time.monotonic() + faults.delay_ms / 1000
                if faults.reorder:
                    # Hold deliveries to the end of a time window so they go out together, shuffled.
                    window = max(faults.delay_ms, 250) / 1000
                    due = math.ceil(due / window) * window
                self._pending[delivery["id"]] = (owner, endpoint["id"], due)
        if count and self._wake is not None:
            self._wake.set()
        return count

    def pending_count(self) -> int:
        return len(self._pending)

    # -- the background sender ----------------------------------------------------------------
    async def run(self) -> None:
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.timeout_seconds)
        try:
            while True:
                now = time.monotonic()
                due = [d for d, (_, _, at) in self._pending.items() if at <= now]
                if not due:
                    upcoming = min((at for _, _, at in self._pending.values()), default=None)
                    wait = 1.0 if upcoming is None else max(0.0, min(1.0, upcoming - now))
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait)
                    continue
                if self.sandbox.faults.webhooks.reorder:
                    self.sandbox.faults.webhook_rng.shuffle(due)
                else:
                    due.sort(key=lambda d: self._pending[d][2])
                # Endpoints are served side by side (a slow one does not hold up the others);
                # each endpoint gets its deliveries one after another, in order.
                by_endpoint: dict[str, list[tuple[str, str]]] = {}
                for delivery_id in due:
                    account, endpoint_id, _ = self._pending.pop(delivery_id)
                    self._in_flight[delivery_id] = (account, endpoint_id)
                    by_endpoint.setdefault(endpoint_id, []).append((account, delivery_id))
                await asyncio.gather(*(self._send_in_order(batch) for batch in by_endpoint.values()))
        finally:
            await self._client.aclose()

    async def _send_in_order(self, batch: list[tuple[str, str]]) -> None:
        for account, delivery_id in batch:
            try:
                await self._attempt(account, delivery_id)
            except Exception:  # one broken delivery must not stop the sender
                logger.exception("webhook delivery %s failed", delivery_id)
            finally:
                self._in_flight.pop(delivery_id, None)

    async def _attempt(self, account: str, delivery_id: str) -> None:
        store = self.sandbox.store
        delivery = store.get(account, delivery_id, DELIVERY_KIND)
        if delivery is None or delivery["status"] != "pending":
            return
        event_account = delivery.get("event_account", account)
        event = store.get(event_account, delivery["event"], "event")
        endpoint = store.get(account, delivery["endpoint"], "webhook_endpoint")
        if event is None or endpoint is None:
            delivery["status"] = "abandoned"
            with store.lock:
                store.put(account, DELIVERY_KIND, delivery)
                store.commit()
            return
        payload = msgspec.json.encode(event).decode()
        outcome: dict[str, Any] = {}
        for _ in range(delivery.get("copies", 1)):
            outcome = await self._post(endpoint, payload)
            delivery["attempts"].append(outcome)
        succeeded = outcome.get("status") is not None and 200 <= outcome["status"] < 300
        if succeeded:
            delivery["status"] = "succeeded"
        elif len(delivery["attempts"]) >= self.max_attempts * delivery.get("copies", 1):
            delivery["status"] = "failed"
        else:
            retries = len(delivery["attempts"]) // delivery.get("copies", 1)
            due = time.monotonic() + self.retry_base_seconds * 2 ** (retries - 1)
            self._pending[delivery_id] = (account, delivery["endpoint"], due)
        with store.lock:
            store.put(account, DELIVERY_KIND, delivery)
            if delivery["status"] != "pending":
                current = store.get(event_account, event["id"], "event")
                if current is not None:
                    current["pending_webhooks"] = max(0, current["pending_webhooks"] - 1)
                    store.put(event_account, "event", current)
            store.commit()

    def may_deliver_to(self, url: str) -> bool:
        """Loopback addresses, or the host the sandbox itself is served on (when mounted)."""
        host = (urlsplit(url).hostname or "").lower()
        own = (urlsplit(self.sandbox.public_url).hostname or "").lower()
        if host in {"localhost", own}:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    async def _post(self, endpoint: dict[str, Any], payload: str) -> dict[str, Any]:
        assert self._client is not None
        secret = endpoint.get("secret", "")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(payload, secret),
        }
        started = time.monotonic()
        attempt: dict[str, Any] = {"at": time.time(), "status": None, "error": None}
        if not self.may_deliver_to(endpoint["url"]):
            attempt["error"] = "refused: the sandbox only delivers webhooks to this machine or its own host"
            attempt["duration_ms"] = 0.0
            return attempt
        try:
            response = await self._client.post(endpoint["url"], content=payload.encode(), headers=headers)
            attempt["status"] = response.status_code
        except httpx.HTTPError as error:
            attempt["error"] = f"{type(error).__name__}: {error}"
            logger.info("webhook delivery to %s failed: %s", endpoint["url"], attempt["error"])
        attempt["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        return attempt

    def _busy(self, account: str | None, endpoint: str | None) -> bool:
        entries = [(a, e) for a, e, _ in self._pending.values()] + list(self._in_flight.values())
        return any(
            (account is None or a == account) and (endpoint is None or e == endpoint) for a, e in entries
        )

    async def drain(
        self, within_seconds: float, *, account: str | None = None, endpoint: str | None = None
    ) -> bool:
        """Wait until nothing (of this account / endpoint) is pending or in flight; True when drained."""
        deadline = time.monotonic() + within_seconds
        while self._busy(account, endpoint) and time.monotonic() < deadline:
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(0.02)
        return not self._busy(account, endpoint)
