"""Billing Portal hand-off: refusals, Tollgate's own configuration, the session, drift repair."""

from __future__ import annotations

import pytest

from app.db import Database
from app.settings import Settings
from tests.conftest import ApiEnv, problem_code
from tests.support.billing import browse, pay, stripe_for
from tests.support.catalog_factory import CatalogFactory, flat

RETURN = {"returnUrl": "https://host.example/account"}


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.plan("pro", charges=[flat(3000)])
    await f.customer("acme")
    return f


async def test_portal_refusals(api: ApiEnv, catalog: CatalogFactory) -> None:
    not_connected = await api.post("/customers/acme/billing-portal", RETURN)
    assert not_connected.status_code == 404 and problem_code(not_connected) == "integration_not_found"
    await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    never_billed = await api.post("/customers/acme/billing-portal", RETURN)
    assert never_billed.status_code == 422 and problem_code(never_billed) == "customer_not_billed"
    unknown = await api.post("/customers/nobody/billing-portal", RETURN)
    assert unknown.status_code == 404 and problem_code(unknown) == "customer_not_found"
    bad_url = await api.post("/customers/acme/billing-portal", {"returnUrl": "javascript:alert(1)"})
    assert bad_url.status_code == 400


async def test_portal_session_uses_tollgates_configuration(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    result = await api.ok(
        "post",
        "/subscriptions",
        {
            "customerId": "acme",
            "planId": "pro",
            "checkoutOptions": {"successUrl": "https://h.example/ok", "cancelUrl": "https://h.example/no"},
        },
    )
    assert (await pay(result["checkoutUrl"])).status_code in (302, 303)
    await api.ok("get", f"/subscriptions/{result['subscription']['id']}/checkout-status")

    portal = await api.ok("post", "/customers/acme/billing-portal", RETURN)
    assert portal["url"].startswith(settings.sandbox_api_base + "/portal/")
    integration = await api.ok("get", "/integrations/stripe")
    config_id = integration["portalConfigurationId"]
    assert config_id and config_id.startswith("bpc_")

    client = await stripe_for(database, settings, catalog)
    config = client.v1.billing_portal.configurations.retrieve(config_id)
    features = config.features
    assert features.invoice_history.enabled is True
    assert features.payment_method_update.enabled is True
    assert features.customer_update.enabled is True
    assert sorted(features.customer_update.allowed_updates) == ["address", "phone", "tax_id"]
    assert features.subscription_cancel.enabled is False
    assert features.subscription_update.enabled is False
    assert (
        config.metadata is not None
        and config.metadata["tollgateIntegrationId"] == integration["integrationId"]
    )

    page = await browse("GET", portal["url"])
    assert page.status_code == 200 and 'href="https://host.example/account"' in page.text

    # Someone turns cancellation on in the dashboard: the next hand-off puts our settings back.
    client.v1.billing_portal.configurations.update(
        config_id, params={"features": {"subscription_cancel": {"enabled": True}}}
    )
    again = await api.ok("post", "/customers/acme/billing-portal", RETURN)
    assert again["url"] != portal["url"]
    assert (await api.ok("get", "/integrations/stripe"))["portalConfigurationId"] == config_id
    assert (
        client.v1.billing_portal.configurations.retrieve(config_id).features.subscription_cancel.enabled
        is False
    )
    configs = client.v1.billing_portal.configurations.list(params={"limit": 20}).data
    ours = [c.id for c in configs if c.metadata is not None and "tollgateIntegrationId" in c.metadata]
    assert ours == [config_id], "one configuration, kept, not one per session"
