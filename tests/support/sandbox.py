"""Start a real Stripe sandbox server for tests, and talk to it with the official SDK.

    with running_sandbox() as sb:
        client = sb.client("sk_test_example")
        client.v1.customers.create(params={"email": "a@example.com"})
        sb.control.add_fault(method="POST", path="/v1/customers", count=1, status=500)

The server is uvicorn on 127.0.0.1 and a free port, in a background thread, with its own
SQLite file, so several sandboxes can run side by side. A test package can also take the
ready-made fixture: `from tests.support.sandbox import stripe_sandbox as stripe_sandbox` in its
conftest.py (the `as` form marks it as a deliberate re-export).
"""

from __future__ import annotations

import contextlib
import http.server
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn

from app.sandbox.server import Sandbox


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_test_key() -> str:
    return "sk_test_" + secrets.token_hex(12)


class SandboxControl:
    """The sandbox's JSON control API (faults, clock, reset, webhook deliveries)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/_sandbox", timeout=30)

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self.http.request(method, path, json=json, params=params)
        response.raise_for_status()
        return response.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", json=rule)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def rate_limit(self, requests_per_second: float | None) -> dict[str, Any]:
        if requests_per_second is None:
            return self._call("PUT", "/rate_limit", json={"enabled": False})
        return self._call(
            "PUT", "/rate_limit", json={"enabled": True, "requests_per_second": requests_per_second}
        )

    def webhook_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("PUT", "/webhook_faults", json=faults)

    def webhook_retry(self, base_seconds: float, max_attempts: int) -> dict[str, Any]:
        return self._call(
            "PUT", "/webhook_retry", json={"base_seconds": base_seconds, "max_attempts": max_attempts}
        )

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        return self._call("GET", "/webhook_deliveries", params=filters)["data"]

    def drain(self, timeout: float = 5.0, *, endpoint: str | None = None, account: str | None = None) -> bool:
        """Wait until webhook deliveries (of one endpoint or account, else all) are done."""
        body = {"timeout": timeout, "endpoint": endpoint, "account": account}
        return self._call("POST", "/webhook_deliveries/drain", json=body)["drained"]

    def advance_clock(self, seconds: int) -> dict[str, Any]:
        return self._call("POST", "/clock/advance", json={"seconds": seconds})

    def name_account(self, key: str, business_name: str) -> dict[str, Any]:
        return self._call("POST", "/accounts", json={"key": key, "business_name": business_name})


@dataclass
class RunningSandbox:
    base_url: str
    database_path: Path
    sandbox: Sandbox
    control: SandboxControl

    def client(self, api_key: str | None = None, **options: Any) -> stripe.StripeClient:
        """An SDK client aimed at this sandbox (no network retries unless asked for)."""
        options.setdefault("max_network_retries", 0)
        return stripe.StripeClient(
            api_key or new_test_key(),
            base_addresses={"api": self.base_url, "connect": self.base_url, "files": self.base_url},
            **options,
        )


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its own handlers
        pass


@contextlib.contextmanager
def serve_asgi(app: Any, port: int) -> Iterator[None]:
    server = _ThreadedServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"asgi-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def running_sandbox(database_path: Path | str | None = None) -> Iterator[RunningSandbox]:
    """A sandbox on a free port with its own SQLite file (a temp file unless one is given)."""
    with contextlib.ExitStack() as stack:
        if database_path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="sandbox-"))
            database_path = Path(folder) / "sandbox.db"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        sandbox = Sandbox(database_path, base_url)
        stack.enter_context(serve_asgi(sandbox, port))
        control = SandboxControl(base_url)
        stack.callback(control.http.close)
        stack.callback(sandbox.store.close)
        yield RunningSandbox(base_url, Path(database_path), sandbox, control)


@pytest.fixture(scope="session")
def stripe_sandbox() -> Iterator[RunningSandbox]:
    """One sandbox for a test session; give each test its own key (`new_test_key()`) to isolate it."""
    with running_sandbox() as running:
        yield running


@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint that records webhook posts; answers `fail_first` times with 500."""

    url: str
    received: list[ReceivedWebhook] = field(default_factory=list)
    fail_first: int = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedWebhook]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

    def types(self) -> list[str]:
        import json

        return [json.loads(hook.body)["type"] for hook in self.received]


@contextlib.contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{port}/webhooks", fail_first=fail_first)
    attempts = {"count": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            attempts["count"] += 1
            if attempts["count"] <= receiver.fail_first:
                self.send_response(500)
                self.end_headers()
                return
            receiver.received.append(
                ReceivedWebhook(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
