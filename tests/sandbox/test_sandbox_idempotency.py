"""Idempotency like Stripe's: same key and parameters replay, different parameters are refused."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.support.sandbox import RunningSandbox


def test_same_key_same_params_replays_the_first_response(client: stripe.StripeClient) -> None:
    first = client.v1.customers.create(
        params={"email": "once@example.com"}, options={"idempotency_key": "create-once"}
    )
    second = client.v1.customers.create(
        params={"email": "once@example.com"}, options={"idempotency_key": "create-once"}
    )
    assert first.id == second.id
    assert [c.id for c in client.v1.customers.list().data] == [first.id]
    response = second.last_response
    assert response is not None
    assert response.headers.get("Idempotent-Replayed") == "true"


def test_same_key_different_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "key-1"})
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "key-1"})
    assert raised.value.http_status == 400
    assert "key-1" in str(raised.value.user_message)


def test_errors_of_executed_requests_replay_too(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Solo"})
    client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 100})
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.products.delete(product.id, options={"idempotency_key": "delete-solo"})  # type: ignore[call-arg]
        assert raised.value.http_status == 400


def test_keys_are_per_account(sandbox_server: RunningSandbox) -> None:
    one, two = sandbox_server.client(), sandbox_server.client()
    a = one.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "shared"})
    b = two.v1.customers.create(params={"email": "other@example.com"}, options={"idempotency_key": "shared"})
    assert a.id != b.id


def test_replay_events_carry_the_idempotency_key(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "evt@example.com"}, options={"idempotency_key": "evt-key"}
    )
    event = client.v1.events.list(params={"type": "customer.created"}).data[0]
    assert event.data.object["id"] == customer.id
    assert event.request is not None
    assert event.request.idempotency_key == "evt-key"
    assert event.request.id is not None
    assert event.request.id.startswith("req_")


def test_get_requests_ignore_idempotency(sandbox_server: RunningSandbox, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "reads"}
    first = httpx.get(f"{sandbox_server.base_url}/v1/customers", headers=headers)
    httpx.post(
        f"{sandbox_server.base_url}/v1/customers",
        data={"email": "n@example.com"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    second = httpx.get(f"{sandbox_server.base_url}/v1/customers", headers=headers)
    assert len(first.json()["data"]) == 0
    assert len(second.json()["data"]) == 1


def test_keys_expire_after_24_hours() -> None:
    from tests.support.sandbox import running_sandbox

    with running_sandbox() as sb:
        client = sb.client()
        first = client.v1.customers.create(
            params={"email": "day1@example.com"}, options={"idempotency_key": "daily"}
        )
        sb.control.advance_clock(23 * 3600)
        with pytest.raises(stripe.IdempotencyError):
            client.v1.customers.create(
                params={"email": "day2@example.com"}, options={"idempotency_key": "daily"}
            )
        sb.control.advance_clock(2 * 3600)
        later = client.v1.customers.create(
            params={"email": "day2@example.com"}, options={"idempotency_key": "daily"}
        )
        assert later.id != first.id
