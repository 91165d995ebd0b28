"""Fault injection through the control API: deterministic, seeded, rate limits, slowness."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from tests.support.sandbox import RunningSandbox


def test_next_n_requests_fail_deterministically(
    client: stripe.StripeClient, sandbox_server: RunningSandbox, control: object
) -> None:
    sandbox_server.control.add_fault(method="POST", path="/v1/customers", count=2, status=500)
    client.v1.products.create(params={"name": "Unaffected"})
    for _ in range(2):
        with pytest.raises(stripe.APIError) as raised:
            client.v1.customers.create(params={"email": "f@example.com"})
        assert raised.value.http_status == 500
    assert client.v1.customers.create(params={"email": "ok@example.com"}).id.startswith("cus_")
    assert sandbox_server.control.status()["faults"] == []


def test_sdk_retries_recover_from_injected_500s(
    sandbox_server: RunningSandbox, api_key: str, control: object
) -> None:
    sandbox_server.control.add_fault(method="POST", path="/v1/products", count=1, status=500)
    client = sandbox_server.client(api_key, max_network_retries=2)
    product = client.v1.products.create(params={"name": "Retried"})
    assert [p.id for p in client.v1.products.list().data] == [product.id]


def test_probabilistic_faults_are_reproducible_with_a_seed(
    sandbox_server: RunningSandbox, api_key: str, control: object
) -> None:
    def run() -> list[int]:
        sandbox_server.control.clear_faults()
        sandbox_server.control.add_fault(path="/v1/products*", probability=0.5, seed=42, status=503)
        statuses = [
            httpx.get(f"{sandbox_server.base_url}/v1/products", auth=(api_key, "")).status_code
            for _ in range(20)
        ]
        return statuses

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}


def test_rate_limit_answers_429(sandbox_server: RunningSandbox, api_key: str, control: object) -> None:
    sandbox_server.control.rate_limit(2)
    statuses = [httpx.get(f"{sandbox_server.base_url}/v1/customers", auth=(api_key, "")) for _ in range(20)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited
    assert limited[0].json()["error"]["code"] == "rate_limit"
    client = sandbox_server.client(api_key)

    def burst() -> None:
        for _ in range(10):
            client.v1.customers.list()

    with pytest.raises(stripe.RateLimitError):
        burst()
    sandbox_server.control.rate_limit(None)
    assert client.v1.customers.list().data == []


def test_slow_answers(sandbox_server: RunningSandbox, client: stripe.StripeClient, control: object) -> None:
    sandbox_server.control.add_fault(method="GET", path="/v1/coupons", count=1, status=200, delay_ms=400)
    started = time.monotonic()
    client.v1.coupons.list()
    assert time.monotonic() - started >= 0.4
    # The rule was for one request only: it is gone now.
    assert sandbox_server.control.status()["faults"] == []


def test_bad_fault_rules_are_refused(sandbox_server: RunningSandbox) -> None:
    response = httpx.post(f"{sandbox_server.base_url}/_sandbox/faults", json={"when": "always"})
    assert response.status_code == 400
