"""Connecting an environment to Stripe (Sandbox and Test mode, both served by the test sandbox)."""

from __future__ import annotations

from tests.conftest import ApiEnv, problem_code
from tests.support.sandbox import RunningSandbox, new_test_key


async def test_sandbox_mode_connect_toggle_remove_and_resume(api: ApiEnv) -> None:
    assert (await api.get("/integrations/stripe")).status_code == 404
    connected = await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    assert connected["status"] == "ACTIVE"
    assert connected["mode"] == "SANDBOX"
    assert connected["accountId"].startswith("acct_")
    assert connected["integrationId"].startswith("int_")
    assert connected["webhookEndpointId"].startswith("we_")
    assert "apiKey" not in connected
    assert connected["apiKeyHint"].startswith("sk_test_")
    assert connected["apiKeyHint"].count("…") == 1
    again = await api.put("/integrations/stripe", {"mode": "SANDBOX"})
    assert again.status_code == 422
    assert problem_code(again) == "integration_exists"
    toggled = await api.ok("patch", "/integrations/stripe", {"syncCustomers": False, "stripeTax": False})
    assert toggled["syncCustomers"] is False
    assert toggled["syncSubscriptions"] is True
    removed = await api.ok("delete", "/integrations/stripe", status=200)
    assert removed["status"] == "REMOVED"
    assert removed["webhookEndpointId"] is None
    assert (await api.get("/integrations/stripe")).status_code == 404
    resumed = await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    assert resumed["accountId"] == connected["accountId"], "reconnecting resumes the same account"
    assert resumed["integrationId"] == connected["integrationId"]


async def test_key_mode_is_checked(api: ApiEnv) -> None:
    cases = [
        ({"mode": "TEST", "apiKey": "sk_live_" + "a" * 24}, 422, "stripe_key_mode_mismatch"),
        ({"mode": "LIVE", "apiKey": "rk_test_" + "a" * 24}, 422, "stripe_key_mode_mismatch"),
        ({"mode": "TEST"}, 400, "api_key_required"),
        ({"mode": "TEST", "apiKey": "pk_test_" + "a" * 24}, 400, "invalid_api_key_format"),
        ({"mode": "SANDBOX", "apiKey": "sk_test_" + "a" * 24}, 400, "api_key_not_allowed"),
        ({"mode": "PRODUCTION"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = await api.put("/integrations/stripe", body)
        assert response.status_code == status, (body, response.text)
        assert problem_code(response) == code
    assert (await api.get("/integrations/stripe")).status_code == 404


async def test_test_mode_with_a_test_key(api: ApiEnv, stripe_sandbox: RunningSandbox) -> None:
    key = new_test_key()
    stripe_sandbox.control.name_account(key, "Acme Test Ltd")
    connected = await api.ok("put", "/integrations/stripe", {"mode": "TEST", "apiKey": key}, status=200)
    assert connected["accountName"] == "Acme Test Ltd"
    assert key not in str(connected)
    endpoints = stripe_sandbox.client(key).v1.webhook_endpoints.list()
    assert [e.url for e in endpoints.data] == [
        f"http://testserver.local/webhooks/stripe/{connected['integrationId']}"
    ]
    permissions = await api.ok("get", "/integrations/stripe/permissions")
    writes = {p["resource"] for p in permissions["permissions"] if p["access"] == "write"}
    assert {"customers", "subscriptions", "prices", "checkout sessions"} <= writes
