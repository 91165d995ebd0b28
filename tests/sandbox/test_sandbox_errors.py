"""Errors like Stripe's: bodies, status codes, Request-Id, keys and account isolation."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.support.sandbox import RunningSandbox, new_test_key


def test_unknown_parameter_is_400_naming_the_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create(params={"favourite_colour": "green"})  # type: ignore[typeddict-unknown-key]
    error = raised.value
    assert error.http_status == 400
    assert error.code == "parameter_unknown"
    assert error.param == "favourite_colour"
    assert error.request_id
    assert error.request_id.startswith("req_")


def test_wrong_type_is_parameter_invalid(sandbox_server: RunningSandbox, api_key: str) -> None:
    response = httpx.post(
        f"{sandbox_server.base_url}/v1/customers", data={"balance": "ten"}, auth=(api_key, "")
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["code"] == "parameter_invalid_integer"
    assert body["param"] == "balance"
    assert response.headers["request-id"].startswith("req_")


def test_missing_object_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert raised.value.param == "id"
    assert "No such customer: 'cus_doesnotexist'" in str(raised.value.user_message)


def test_unknown_url_is_404(sandbox_server: RunningSandbox, api_key: str) -> None:
    response = httpx.get(
        f"{sandbox_server.base_url}/v1/bananas", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 404
    assert "Unrecognized request URL" in response.json()["error"]["message"]


def test_missing_and_malformed_keys_are_401(sandbox_server: RunningSandbox) -> None:
    no_key = httpx.get(f"{sandbox_server.base_url}/v1/customers")
    assert no_key.status_code == 401
    assert "did not provide an API key" in no_key.json()["error"]["message"]
    with pytest.raises(stripe.AuthenticationError):
        sandbox_server.client("not_a_key_at_all").v1.customers.list()


def test_live_keys_are_refused(sandbox_server: RunningSandbox) -> None:
    with pytest.raises(stripe.AuthenticationError) as raised:
        sandbox_server.client("sk_live_abcdefghijklmnop").v1.customers.list()
    assert "test mode" in str(raised.value.user_message)


def test_restricted_test_keys_work(sandbox_server: RunningSandbox) -> None:
    client = sandbox_server.client("rk_test_" + new_test_key()[8:])
    assert client.v1.customers.create(params={"email": "rk@example.com"}).id.startswith("cus_")


def test_each_key_is_its_own_account(sandbox_server: RunningSandbox) -> None:
    first, second = sandbox_server.client(new_test_key()), sandbox_server.client(new_test_key())
    customer = first.v1.customers.create(params={"email": "mine@example.com"})
    assert first.v1.accounts.retrieve_current().id != second.v1.accounts.retrieve_current().id
    with pytest.raises(stripe.InvalidRequestError):
        second.v1.customers.retrieve(customer.id)
    assert [c.id for c in second.v1.customers.list().data] == []
    assert [c.id for c in first.v1.customers.list().data] == [customer.id]


def test_business_name_of_an_account_can_be_set(sandbox_server: RunningSandbox, api_key: str) -> None:
    sandbox_server.control.name_account(api_key, "Acme Rockets")
    account = sandbox_server.client(api_key).v1.accounts.retrieve_current()
    assert account.business_profile is not None
    assert account.business_profile.name == "Acme Rockets"


def test_expand_inlines_related_objects(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "email": "x@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    expanded = client.v1.customers.retrieve(
        customer.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    pm = expanded.invoice_settings.default_payment_method  # type: ignore[union-attr]
    assert not isinstance(pm, str)
    assert pm is not None
    assert pm.card is not None
    assert pm.card.last4 == "4242"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve(customer.id, params={"expand": ["nothing_here"]})
    assert "cannot be expanded" in str(raised.value.user_message)
