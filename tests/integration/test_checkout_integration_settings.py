"""What the integration shows for Checkout: the grace period check and the Stripe Tax toggle."""

from __future__ import annotations

from tests.conftest import ApiEnv, problem_code
from tests.support.sandbox import RunningSandbox, new_test_key


async def test_grace_period_check(api: ApiEnv, stripe_sandbox: RunningSandbox) -> None:
    sandbox = await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    check = sandbox["gracePeriodCheck"]
    assert check["status"] == "OK" and check["currentSeconds"] == 3600 and check["requiredSeconds"] == 3600
    await api.ok("delete", "/integrations/stripe", status=200)


async def test_grace_period_unknown_until_stripe_shows_it(
    api: ApiEnv, stripe_sandbox: RunningSandbox
) -> None:
    key = new_test_key()
    connected = await api.ok("put", "/integrations/stripe", {"mode": "TEST", "apiKey": key}, status=200)
    check = connected["gracePeriodCheck"]
    assert check["status"] == "UNKNOWN" and check["currentSeconds"] is None
    assert connected["gracePeriodOk"] is None, "unknown is not OK"
    assert "no API" in check["message"] and "Dashboard" in check["message"]
    assert check["settingsUrl"] == "https://dashboard.stripe.com/test/settings/billing/automatic"
    again = await api.ok("post", "/integrations/stripe/grace-period-check", status=200)
    assert again["gracePeriodCheck"]["status"] == "UNKNOWN", "no draft subscription invoice to read it from"


async def test_stripe_tax_toggle_needs_stripe_tax_set_up(api: ApiEnv, stripe_sandbox: RunningSandbox) -> None:
    key = new_test_key()
    await api.ok("put", "/integrations/stripe", {"mode": "TEST", "apiKey": key}, status=200)
    refused = await api.patch("/integrations/stripe", {"stripeTax": True})
    assert refused.status_code == 422 and problem_code(refused) == "stripe_tax_not_active"
    body = refused.json()
    assert body["taxStatus"] == "pending" and body["missingFields"] == ["head_office"]
    assert (await api.ok("get", "/integrations/stripe"))["stripeTax"] is False
    stripe_sandbox.client(key).v1.tax.settings.update(params={"head_office": {"address": {"country": "FR"}}})
    assert (await api.ok("patch", "/integrations/stripe", {"stripeTax": True}))["stripeTax"] is True
    # Turning it off needs no check.
    assert (await api.ok("patch", "/integrations/stripe", {"stripeTax": False}))["stripeTax"] is False
