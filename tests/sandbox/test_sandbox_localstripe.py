"""Cross-check with localstripe where it supports the same thing: both must agree.

localstripe is GPL, so it is only ever started as a separate process (never imported). It binds
every interface, so it gets a free port; it runs from a temp folder with --from-scratch so it
neither reads nor leaves state behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.support.sandbox import RunningSandbox, free_port, new_test_key, webhook_receiver


def _localstripe_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "localstripe"
    return str(beside_python) if beside_python.exists() else shutil.which("localstripe")


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _localstripe_binary()
    if binary is None:
        reason = "localstripe is not installed (it is in the dev extras: make install)"
        print(f"localstripe cross-check skipped: {reason}")
        pytest.skip(reason)
    port = free_port()
    folder = tmp_path_factory.mktemp("localstripe")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--from-scratch"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            stderr = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
            process.kill()
            reason = f"localstripe did not start on Python {sys.version.split()[0]}: {stderr}"
            print(f"localstripe cross-check skipped: {reason}")
            pytest.skip(reason)
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(params=["sandbox", "localstripe"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    if request.param == "sandbox":
        running: RunningSandbox = request.getfixturevalue("sandbox_server")
        return "sandbox", running.base_url
    return "localstripe", request.getfixturevalue("localstripe_url")


def _client(base_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        new_test_key(),
        base_addresses={"api": base_url, "connect": base_url, "files": base_url},
        max_network_retries=0,
    )


def _card(client: stripe.StripeClient, number: str = "4242424242424242") -> Any:
    return client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )


# Each scenario returns what it observed; the same scenario must observe the same on both servers.
def customers_scenario(client: stripe.StripeClient) -> dict[str, Any]:
    created = client.v1.customers.create(
        params={"email": "cross@example.com", "name": "Cross Check", "metadata": {"plan": "pro"}}
    )
    fetched = client.v1.customers.retrieve(created.id)
    updated = client.v1.customers.update(
        created.id, params={"metadata": {"plan": "team"}, "description": "changed"}
    )
    listed = [c.id for c in client.v1.customers.list(params={"limit": 10}).data]
    deleted = client.v1.customers.delete(created.id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_doesnotexist")
    return {
        "prefix": created.id[:4],
        "object": created.object,
        "email": fetched.email,
        "name": fetched.name,
        "metadata": updated.metadata.to_dict() if updated.metadata is not None else None,
        "description": updated.description,
        "listed": listed == [created.id],
        "livemode": created.livemode,
        "deleted": deleted.deleted,
        "missing_status": missing.value.http_status,
    }


def payment_methods_scenario(client: stripe.StripeClient) -> dict[str, Any]:
    customer = client.v1.customers.create(params={"email": "pm@example.com"})
    pm = _card(client)
    attached = client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    listed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data
    customer = client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    detached = client.v1.payment_methods.detach(pm.id)
    card = attached.card
    assert card is not None
    return {
        "prefix": pm.id[:3],
        "type": pm.type,
        "last4": card.last4,
        "brand": card.brand,
        "exp": (card.exp_month, card.exp_year),
        "attached_to_customer": attached.customer == customer.id,
        "listed": [p.id for p in listed] == [pm.id],
        "default_set": customer.invoice_settings is not None
        and customer.invoice_settings.default_payment_method == pm.id,
        "detached_customer": detached.customer,
    }


def invoices_scenario(client: stripe.StripeClient) -> dict[str, Any]:
    plan = client.v1.plans.create(
        params={"amount": 1500, "currency": "usd", "interval": "month", "product": {"name": "Cross plan"}}
    )
    customer = client.v1.customers.create(params={"email": "inv@example.com"})
    pm = _card(client)
    client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": plan.id, "quantity": 2}]}
    )
    invoices = client.v1.invoices.list(params={"customer": customer.id}).data
    invoice = client.v1.invoices.retrieve(invoices[0].id)
    return {
        "subscription_prefix": subscription.id[:4],
        "subscription_status": subscription.status,
        "invoice_count": len(invoices),
        "invoice_prefix": invoice.id[:3],
        "invoice_status": invoice.status,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "currency": invoice.currency,
        "customer": invoice.customer == customer.id,
        "line_amounts": [line.amount for line in invoice.lines.data],
    }


@pytest.mark.parametrize(
    "scenario", [customers_scenario, payment_methods_scenario, invoices_scenario], ids=lambda f: f.__name__
)
def test_sandbox_and_localstripe_agree(
    scenario: Any, sandbox_server: RunningSandbox, localstripe_url: str
) -> None:
    ours = scenario(_client(sandbox_server.base_url))
    theirs = scenario(_client(localstripe_url))
    assert ours == theirs


def test_expected_observations(sandbox_server: RunningSandbox) -> None:
    """What the agreed observations are (so agreement cannot hide a shared mistake)."""
    client = _client(sandbox_server.base_url)
    assert customers_scenario(client) == {
        "prefix": "cus_",
        "object": "customer",
        "email": "cross@example.com",
        "name": "Cross Check",
        "metadata": {"plan": "team"},
        "description": "changed",
        "listed": True,
        "livemode": False,
        "deleted": True,
        "missing_status": 404,
    }
    observed = invoices_scenario(client)
    assert observed["invoice_status"] == "paid"
    assert observed["total"] == 3000
    assert observed["line_amounts"] == [3000]


def test_webhook_signatures_verify_on_both(target: tuple[str, str]) -> None:
    name, base_url = target
    client = _client(base_url)
    with webhook_receiver() as receiver:
        if name == "localstripe":
            secret = "whsec_crosscheck_secret"
            registered = httpx.post(
                f"{base_url}/_config/webhooks/cross-{free_port()}",
                data={"url": receiver.url, "secret": secret, "events[0]": "customer.created"},
                auth=(client._requestor.api_key or "", ""),  # type: ignore[attr-defined]
            )
            assert registered.status_code == 200
        else:
            endpoint = client.v1.webhook_endpoints.create(
                params={"url": receiver.url, "enabled_events": ["customer.created"]}
            )
            secret = str(endpoint.secret)
        customer = client.v1.customers.create(params={"email": "signed@example.com"})
        deadline = time.monotonic() + 10
        matching = []
        # localstripe also sends earlier events (other tests' customers) once its hook exists.
        while not matching and time.monotonic() < deadline:
            matching = [
                hook
                for hook in receiver.received
                if customer.id in hook.body and "customer.created" in hook.body
            ]
            time.sleep(0.05)
        assert matching, f"{name} sent no customer.created webhook"
        event = stripe.Webhook.construct_event(
            matching[0].body, matching[0].headers["stripe-signature"], secret
        )
        assert event.type == "customer.created"
        assert event.data.object["id"] == customer.id
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(
                matching[0].body, matching[0].headers["stripe-signature"], "whsec_other"
            )
