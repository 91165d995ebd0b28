"""Webhooks: signed exactly like Stripe (verified with the SDK), retried, filtered, faulty on demand."""

from __future__ import annotations

import json

import pytest
import stripe

from app.sandbox.webhooks import sign
from tests.support.sandbox import RunningSandbox, webhook_receiver


def test_deliveries_verify_with_the_sdk(sandbox_server: RunningSandbox, client: stripe.StripeClient) -> None:
    with webhook_receiver() as receiver:
        endpoint = client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
        secret = endpoint.secret
        assert secret is not None
        customer = client.v1.customers.create(
            params={"email": "hook@example.com"}, options={"idempotency_key": "hook-key"}
        )
        client.v1.customers.update(customer.id, params={"metadata": {"plan": "pro"}})
        received = receiver.wait_for(2)
        assert receiver.types() == ["customer.created", "customer.updated"]
        event = stripe.Webhook.construct_event(
            received[0].body, received[0].headers["stripe-signature"], secret
        )
        assert event.type == "customer.created"
        assert event.data.object["id"] == customer.id
        assert event.request is not None
        assert event.request.idempotency_key == "hook-key"
        updated = client.construct_event(received[1].body, received[1].headers["stripe-signature"], secret)
        assert updated.data.to_dict()["previous_attributes"] == {"metadata": {}}
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(
                received[0].body, received[0].headers["stripe-signature"], "whsec_wrong"
            )
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(
                received[0].body.replace("hook@", "evil@"), received[0].headers["stripe-signature"], secret
            )


def test_signature_format_matches_stripe() -> None:
    header = sign('{"id": "evt_1"}', "whsec_test", timestamp=1_700_000_000)
    timestamp, v1 = header.split(",")
    assert timestamp == "t=1700000000"
    assert v1 == "v1=" + stripe.WebhookSignature._compute_signature(
        '1700000000.{"id": "evt_1"}', "whsec_test"
    )


def test_only_enabled_events_are_sent(client: stripe.StripeClient, sandbox_server: RunningSandbox) -> None:
    with webhook_receiver() as receiver:
        client.v1.webhook_endpoints.create(
            params={"url": receiver.url, "enabled_events": ["product.created"]}
        )
        client.v1.customers.create(params={"email": "quiet@example.com"})
        endpoint = client.v1.webhook_endpoints.list().data[0]
        product = client.v1.products.create(params={"name": "Loud"})
        assert sandbox_server.control.drain(endpoint=endpoint.id)
        assert receiver.types() == ["product.created"]
        assert json.loads(receiver.received[0].body)["data"]["object"]["id"] == product.id


def test_failed_deliveries_are_retried_with_backoff(
    client: stripe.StripeClient, sandbox_server: RunningSandbox, control: object
) -> None:
    sandbox_server.control.webhook_retry(base_seconds=0.3, max_attempts=5)
    try:
        with webhook_receiver(fail_first=2) as receiver:
            endpoint = client.v1.webhook_endpoints.create(
                params={"url": receiver.url, "enabled_events": ["coupon.created"]}
            )
            coupon = client.v1.coupons.create(params={"amount_off": 500, "currency": "usd"})
            receiver.wait_for(1)
            assert sandbox_server.control.drain(endpoint=endpoint.id)
            (delivery,) = sandbox_server.control.deliveries(endpoint=endpoint.id)
            assert delivery["status"] == "succeeded"
            assert [a["status"] for a in delivery["attempts"]] == [500, 500, 200]
            gaps = [
                b["at"] - a["at"]
                for a, b in zip(delivery["attempts"], delivery["attempts"][1:], strict=False)
            ]
            assert gaps[1] > gaps[0]  # backoff grows
            assert json.loads(receiver.received[0].body)["data"]["object"]["id"] == coupon.id
            assert (
                client.v1.events.retrieve(json.loads(receiver.received[0].body)["id"]).pending_webhooks == 0
            )
    finally:
        sandbox_server.control.webhook_retry(base_seconds=1.0, max_attempts=5)


def test_unreachable_endpoint_gives_up_after_max_attempts(
    client: stripe.StripeClient, sandbox_server: RunningSandbox
) -> None:
    sandbox_server.control.webhook_retry(base_seconds=0.01, max_attempts=3)
    try:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": "http://127.0.0.1:9/nowhere", "enabled_events": ["product.created"]}
        )
        client.v1.products.create(params={"name": "Lost"})
        assert sandbox_server.control.drain(10, endpoint=endpoint.id)
        (delivery,) = sandbox_server.control.deliveries(endpoint=endpoint.id)
        assert delivery["status"] == "failed"
        assert len(delivery["attempts"]) == 3
        assert delivery["attempts"][0]["error"]
    finally:
        sandbox_server.control.webhook_retry(base_seconds=1.0, max_attempts=5)


def test_webhook_faults_drop_and_duplicate(
    client: stripe.StripeClient, sandbox_server: RunningSandbox, control: object
) -> None:
    with webhook_receiver() as receiver:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": receiver.url, "enabled_events": ["product.created"]}
        )
        sandbox_server.control.webhook_faults(duplicate=1.0)
        client.v1.products.create(params={"name": "Twice"})
        sandbox_server.control.webhook_faults(drop=1.0)
        client.v1.products.create(params={"name": "Never"})
        sandbox_server.control.webhook_faults()
        assert sandbox_server.control.drain(endpoint=endpoint.id)
        names = [json.loads(r.body)["data"]["object"]["name"] for r in receiver.received]
        assert names == ["Twice", "Twice"]
        statuses = sorted(d["status"] for d in sandbox_server.control.deliveries(endpoint=endpoint.id))
        assert statuses == ["dropped", "succeeded"]


def test_delayed_and_reordered_deliveries(
    client: stripe.StripeClient, sandbox_server: RunningSandbox, control: object
) -> None:
    with webhook_receiver() as receiver:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": receiver.url, "enabled_events": ["product.created"]}
        )
        sandbox_server.control.webhook_faults(delay_ms=1500, reorder=True, seed=3)
        names = [f"R{n}" for n in range(6)]
        for name in names:
            client.v1.products.create(params={"name": name})
        assert sandbox_server.control.drain(endpoint=endpoint.id)
        got = [json.loads(r.body)["data"]["object"]["name"] for r in receiver.received]
        assert sorted(got) == names
        assert got != names  # with this seed the batch arrives shuffled
        for delivery in sandbox_server.control.deliveries(endpoint=endpoint.id):
            assert delivery["attempts"][0]["at"] - delivery["created"] >= 1.4  # held back by the delay


def test_webhooks_go_to_this_machine_only(
    client: stripe.StripeClient, sandbox_server: RunningSandbox
) -> None:
    webhooks = sandbox_server.sandbox.webhooks
    assert webhooks.may_deliver_to("http://127.0.0.1:8000/hooks")
    assert webhooks.may_deliver_to("http://[::1]:8000/hooks")
    assert webhooks.may_deliver_to("http://localhost/hooks")
    assert not webhooks.may_deliver_to("https://example.com/hooks")
    sandbox_server.control.webhook_retry(base_seconds=0.01, max_attempts=2)
    try:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": "https://example.com/hooks", "enabled_events": ["product.created"]}
        )
        client.v1.products.create(params={"name": "Stays home"})
        assert sandbox_server.control.drain(endpoint=endpoint.id)
        (delivery,) = sandbox_server.control.deliveries(endpoint=endpoint.id)
        assert delivery["status"] == "failed"
        assert delivery["attempts"][0]["error"].startswith("refused")
    finally:
        sandbox_server.control.webhook_retry(base_seconds=1.0, max_attempts=5)
