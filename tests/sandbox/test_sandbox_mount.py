"""The sandbox mounted inside Tollgate under /sandbox/stripe, as in `make run`."""

from __future__ import annotations

from pathlib import Path

import httpx
import stripe

from app.main import create_app
from app.settings import Settings
from tests.support.sandbox import free_port, serve_asgi


def test_sdk_talks_to_the_mounted_sandbox(tmp_path: Path) -> None:
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}",
        secret="test-secret",
        port=port,
        public_url=public_url,
    )
    with serve_asgi(create_app(settings), port):
        base = f"{public_url}/sandbox/stripe"
        client = stripe.StripeClient(
            "sk_test_mounted_key",
            base_addresses={"api": base, "connect": base, "files": base},
            max_network_retries=0,
        )
        product = client.v1.products.create(params={"name": "Mounted"})
        assert client.v1.products.retrieve(product.id).name == "Mounted"
        price = client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 900,
                "recurring": {"interval": "month"},
            }
        )
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": f"{public_url}/done",
            }
        )
        assert session.url == f"{base}/checkout/{session.id}"
        page = httpx.get(str(session.url))
        assert page.status_code == 200
        assert "Mounted" in page.text
        assert httpx.get(f"{base}/dashboard/{product.id}").status_code == 200
        assert httpx.get(f"{public_url}/healthz").json() == {"status": "ok"}
    assert (tmp_path / "sandbox.db").exists()
