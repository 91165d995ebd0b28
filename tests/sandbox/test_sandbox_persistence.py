"""State lives in SQLite: it survives a restart, and sandboxes side by side stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import stripe

from tests.support.sandbox import running_sandbox


def test_state_survives_a_restart(tmp_path: Path) -> None:
    database = tmp_path / "sandbox.db"
    key = "sk_test_persistent_key_123"
    with running_sandbox(database) as first:
        client = first.client(key)
        product = client.v1.products.create(params={"name": "Durable"})
        customer = client.v1.customers.create(
            params={"email": "keep@example.com"}, options={"idempotency_key": "durable"}
        )
    with running_sandbox(database) as second:
        client = second.client(key)
        assert client.v1.products.retrieve(product.id).name == "Durable"
        assert (
            client.v1.customers.create(
                params={"email": "keep@example.com"}, options={"idempotency_key": "durable"}
            ).id
            == customer.id
        )
        assert [c.id for c in client.v1.customers.list().data] == [customer.id]


def test_two_sandboxes_side_by_side() -> None:
    key = "sk_test_same_key_everywhere"
    with running_sandbox() as one, running_sandbox() as two:
        assert one.base_url != two.base_url
        made = one.client(key).v1.products.create(params={"name": "Only here"})
        assert two.client(key).v1.products.list().data == []
        with pytest.raises(stripe.InvalidRequestError) as raised:
            two.client(key).v1.products.retrieve(made.id)
        assert raised.value.http_status == 404


def test_reset_clears_everything() -> None:
    with running_sandbox() as sb:
        client = sb.client()
        client.v1.products.create(params={"name": "Gone soon"})
        sb.control.reset()
        assert client.v1.products.list().data == []


async def test_control_api_only_answers_this_machine() -> None:
    from app.sandbox.server import Sandbox

    sandbox = Sandbox(None, "http://sandbox.example")
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/_sandbox/reset",
        "headers": [],
        "query_string": b"",
        "client": ("203.0.113.9", 5000),
    }
    await sandbox(scope, receive, send)
    assert sent[0]["status"] == 403
    await sandbox.stop_background()
