"""Console Settings → Integrations → Stripe and the webhook events pages, through the test client:
every action goes through the integration service against the test run's sandbox."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration, WebhookEvent, WebhookStatus
from app.billing.webhooks import process_pending
from app.core.outbox import OutboxEvent
from app.db import Database, utcnow
from app.sandbox.webhooks import sign
from app.settings import Settings
from tests.conftest import ApiEnv
from tests.integration.test_admin_screens import Console, field_error, open_console
from tests.integration.test_admin_screens import cheap_password_hashing as cheap_password_hashing
from tests.integration.test_admin_screens import console as console
from tests.integration.test_oauth_connect import connect_client as connect_client
from tests.integration.test_oauth_connect import connect_settings as connect_settings
from tests.support.billing import browse, path_of, query_of
from tests.support.sandbox import RunningSandbox, new_test_key

PAGE = "/admin/settings/integrations/stripe"


def flash_text(page: str) -> str:
    match = re.search(r'<div class="flash[^"]*" role="(?:status|alert)">([^<]*)</div>', page)
    assert match, "no flash message"
    return html.unescape(match.group(1))


async def resumes(database: Database, integration_id: str) -> int:
    """How many times saving the toggles asked the sync to go over everything again."""
    async with database.session() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .join(StripeIntegration, StripeIntegration.pk == OutboxEvent.entity_pk)
                .where(
                    OutboxEvent.entity_type == "integration",
                    OutboxEvent.change == "resumed",
                    StripeIntegration.ref == integration_id,
                )
            )
            or 0
        )


async def test_sandbox_connect_toggles_grace_check_and_remove(
    console: Console, api: ApiEnv, database: Database
) -> None:
    page = await console.get(PAGE)
    assert page.status_code == 200 and "Not connected" in page.text
    assert 'aria-current="page">Sandbox</a>' in page.text and 'name="apiKey"' not in page.text
    assert "Connect with Stripe</a>" not in page.text
    test_tab = await console.get(f"{PAGE}?mode=TEST")
    assert 'name="apiKey"' in test_tab.text and "TOLLGATE_STRIPE_CONNECT_CLIENT_ID" in test_tab.text
    assert "Connect with Stripe</a>" not in test_tab.text, "offered only when Connect is configured"
    # The switcher's target for this section leads to the Stripe page of the chosen environment.
    settings_index = await console.get("/admin/settings", follow_redirects=False)
    assert settings_index.status_code == 303
    assert settings_index.headers["location"] == f"{PAGE}?env={console.env}"

    connected = await console.post(f"{PAGE}/connect", {"mode": "SANDBOX"})
    assert connected.status_code == 303, connected.text
    integration = await api.ok("get", "/integrations/stripe")
    page = await console.get(PAGE)
    assert flash_text(page.text).startswith("Connected to Stripe account ")
    assert '<span class="badge badge-ok">Active</span>' in page.text
    assert f"<code>{integration['accountId']}</code>" in page.text
    assert f"<code>{integration['integrationId']}</code>" in page.text
    assert integration["accountName"] and integration["accountName"] in page.text
    assert f"<code>{integration['apiKeyHint']}</code>" in page.text
    assert '<th scope="row">Read</th><td>Account, charges and refunds, events' in page.text
    assert '<th scope="row">Write</th><td>Checkout sessions, coupons, customers' in page.text

    saved = await console.post(f"{PAGE}/options", {"syncCustomers": "on"})
    assert saved.status_code == 303
    assert await resumes(database, integration["integrationId"]) == 0, "Sync customers was on already"
    after = await api.ok("get", "/integrations/stripe")
    assert (after["syncCustomers"], after["syncSubscriptions"], after["stripeTax"]) == (True, False, False)
    page = await console.get(PAGE)
    assert flash_text(page.text) == "Stripe settings saved."
    assert re.search(
        r'id="f-syncSubscriptions" name="syncSubscriptions" type="checkbox"(?! checked)', page.text
    )
    # Stripe Tax is not set up in a new sandbox account: refused next to its checkbox, nothing saved.
    refused = await console.post(
        f"{PAGE}/options", {"syncCustomers": "on", "syncSubscriptions": "on", "stripeTax": "on"}
    )
    assert refused.status_code == 422
    assert "Stripe Tax is not set up" in field_error(refused.text, "f-stripeTax")
    unchanged = await api.ok("get", "/integrations/stripe")
    assert (unchanged["syncSubscriptions"], unchanged["stripeTax"]) == (False, False)
    # htmx (a boosted form) gets the same answer as a client-side visit.
    resumed = await console.post(
        f"{PAGE}/options",
        {"syncCustomers": "on", "syncSubscriptions": "on"},
        headers={"HX-Request": "true", "HX-Target": "main"},
    )
    assert resumed.status_code == 200 and PAGE in resumed.headers["HX-Location"]
    assert (await api.ok("get", "/integrations/stripe"))["syncSubscriptions"] is True
    assert await resumes(database, integration["integrationId"]) == 1

    checked = await console.post(f"{PAGE}/grace-period-check", {})
    assert checked.status_code == 303 and checked.headers["location"].endswith("#grace-period")
    page = await console.get(PAGE)
    assert flash_text(page.text) == "Grace period checked."
    assert '<div class="check-result check-ok" role="status">' in page.text
    assert "Invoices finalize 60 minutes after they are created." in page.text

    # Removing needs the confirmation's own field, and the CSRF token.
    asked = await console.post(f"{PAGE}/remove", {})
    assert asked.status_code == 200 and "Remove the Stripe integration?" in asked.text
    assert 'name="confirm" value="remove"' in asked.text
    forged = await console.client.post(
        f"{PAGE}/remove?env={console.env}", data={"confirm": "remove"}, follow_redirects=False
    )
    assert forged.status_code == 403 and "security token" in forged.text
    assert (await api.ok("get", "/integrations/stripe"))["status"] == "ACTIVE"
    confirm_page = await console.get(f"{PAGE}/remove")
    assert confirm_page.status_code == 200 and integration["accountId"] in confirm_page.text
    removed = await console.post(f"{PAGE}/remove", {"confirm": "remove"})
    assert removed.status_code == 303
    assert (await api.get("/integrations/stripe")).status_code == 404
    page = await console.get(PAGE)
    assert flash_text(page.text).startswith("Stripe integration removed.") and "Not connected" in page.text
    # Nothing to act on any more: the console's 404 page, not a 500.
    assert (await console.post(f"{PAGE}/grace-period-check", {})).status_code == 303
    assert "not connected to Stripe" in flash_text((await console.get(PAGE)).text)
    assert (await console.get(f"{PAGE}/remove")).status_code == 404


async def test_key_errors_land_on_the_key_field_and_change_nothing(
    console: Console, api: ApiEnv, stripe_sandbox: RunningSandbox
) -> None:
    await console.get(f"{PAGE}?mode=TEST")
    live_key = "sk_live_" + "a" * 24
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"mode": "TEST", "apiKey": live_key}, "f-apiKey", "This is a live key but Test mode is selected"),
        (
            {"mode": "TEST", "apiKey": "pk_test_" + "b" * 24},
            "f-apiKey",
            "publishable keys (pk_) cannot be used",
        ),
        ({"mode": "TEST"}, "f-apiKey", "Test mode needs a Stripe secret or restricted key."),
        # Well-formed, but Stripe (the sandbox, which runs in test mode only) refuses it.
        ({"mode": "LIVE", "apiKey": live_key}, "f-apiKey", "Stripe refused the key: "),
        ({"mode": "TEST", "apiKey": "sk_test_abc"}, "f-apiKey", "Stripe refused the key: Invalid API Key"),
    ]
    summaries: list[str] = []
    for form, field, message in cases:
        response = await console.post(f"{PAGE}/connect", form)
        summaries.append(response.text)
        assert response.status_code == 422, (form, response.text)
        assert message in field_error(response.text, field), form
        assert form.get("apiKey", "\0") not in response.text, "a typed key is never shown again"
        assert f'aria-current="page">{"Live" if form["mode"] == "LIVE" else "Test mode"}</a>' in response.text
    assert all('<a href="#f-apiKey">API key</a>: ' in text for text in summaries), "named for people"
    bad_mode = await console.post(f"{PAGE}/connect", {"mode": "PRODUCTION"})
    assert bad_mode.status_code == 422 and "PRODUCTION" in bad_mode.text
    assert (await api.get("/integrations/stripe")).status_code == 404
    assert stripe_sandbox.client(live_key.replace("live", "test")).v1.webhook_endpoints.list().data == []

    key = new_test_key()
    stripe_sandbox.control.name_account(key, "Acme Console Ltd")
    connected = await console.post(f"{PAGE}/connect", {"mode": "TEST", "apiKey": key})
    assert connected.status_code == 303
    page = await console.get(PAGE)
    assert flash_text(page.text) == "Connected to Stripe account Acme Console Ltd."
    assert "Acme Console Ltd" in page.text and "Test mode" in page.text
    assert key not in page.text and f"<code>sk_test_…{key[-4:]}</code>" in page.text
    assert '<div class="check-result check-unknown" role="status">' in page.text
    again = await console.post(f"{PAGE}/connect", {"mode": "TEST", "apiKey": key})
    assert again.status_code == 422 and "connected already" in again.text


async def test_grace_period_too_short_is_said_plainly(
    console: Console, api: ApiEnv, database: Database
) -> None:
    await console.post(f"{PAGE}/connect", {"mode": "SANDBOX"})
    # The sandbox always finalizes after an hour; a Stripe account may be set to less.
    async with database.session() as session:
        await session.execute(
            update(StripeIntegration)
            .where(StripeIntegration.ref == (await api.ok("get", "/integrations/stripe"))["integrationId"])
            .values(invoice_grace_period_seconds=600)
        )
    page = await console.get(PAGE)
    assert '<div class="check-result check-too_short" role="status">' in page.text
    assert (
        "<strong>Shorter than 1 hour</strong>: usage-based charges cannot be added to invoices" in page.text
    )
    assert "Invoices finalize 10 minutes after they are created" in page.text


async def test_connect_with_stripe_returns_to_the_page(console: Console) -> None:
    denied = await console.get(f"{PAGE}?stripeConnected=false&error=access_denied")
    assert flash_text(denied.text) == "The connection was declined on Stripe's page."
    claimed = await console.get(f"{PAGE}?stripeConnected=true")
    assert "Connected with Stripe." not in claimed.text and "Not connected" in claimed.text
    odd = await console.get(f"{PAGE}?stripeConnected=false&error=%3Cb%3Eodd%3C/b%3E")
    assert "Stripe did not connect (&lt;b&gt;odd&lt;/b&gt;)." in odd.text
    # Not configured in this app: the start answers the console's refusal page, never a 500.
    start = await console.get(f"{PAGE}/oauth?mode=TEST")
    assert start.status_code == 422 and "Connect with Stripe is not configured" in start.text


async def test_connect_with_stripe_from_the_console(
    connect_client: AsyncTestClient[Litestar], database: Database, api: ApiEnv
) -> None:
    env = api.created.environment_id
    console = await open_console(connect_client, database, env)
    try:
        page = await console.get(f"{PAGE}?mode=TEST")
        assert (
            f'href="{PAGE}/oauth?env={env}&amp;mode=TEST" hx-boost="false">Connect with Stripe</a>'
            in page.text
        )
        assert "TOLLGATE_STRIPE_CONNECT_CLIENT_ID" not in page.text
        assert "Connect with Stripe</a>" not in (await console.get(PAGE)).text, "not for Sandbox mode"
        start = await console.get(f"{PAGE}/oauth?mode=TEST", follow_redirects=False)
        assert start.status_code == 303
        authorize = start.headers["location"]
        args = query_of(authorize)
        assert args["redirect_uri"] == "http://testserver.local/integrations/stripe/oauth/callback"
        consent = await browse(
            "POST",
            authorize.split("?")[0],
            data={**args, "decision": "approve", "business_name": "Console Oauth Ltd"},
        )
        assert consent.status_code in (302, 303)
        back = await connect_client.get(path_of(consent.headers["location"]), follow_redirects=False)
        assert back.status_code == 303
        location = back.headers["location"]
        assert location.startswith(f"http://testserver.local{PAGE}?env={env}&stripeConnected=true&")
        landed = await connect_client.get(path_of(location))
        assert flash_text(landed.text) == "Connected with Stripe."
        assert "Console Oauth Ltd" in landed.text and "Test mode" in landed.text
        assert (await api.ok("get", "/integrations/stripe"))["integrationId"] == query_of(location)[
            "integrationId"
        ]
    finally:
        connect_client.cookies.clear()


async def _deliver(
    console: Console, settings: Settings, database: Database, events: list[dict[str, Any]]
) -> str:
    """Connect Sandbox mode and deliver signed events to the webhook URL, as Stripe does."""
    assert (await console.post(f"{PAGE}/connect", {"mode": "SANDBOX"})).status_code == 303
    integration_id = await console_integration_id(console)
    async with database.session() as session:
        row = await session.scalar(select(StripeIntegration).where(StripeIntegration.ref == integration_id))
        assert row is not None
        secret = IntegrationService(session, settings).webhook_secret(row)
        ref = row.ref
    assert secret
    for event in events:
        body = json.dumps(event)
        response = await console.client.post(
            f"/webhooks/stripe/{ref}", content=body, headers={"Stripe-Signature": sign(body, secret)}
        )
        assert response.status_code == 200, response.text
    return ref


async def console_integration_id(console: Console) -> str:
    match = re.search(r"<dt>Integration id</dt><dd><code>(int_\w+)</code>", (await console.get(PAGE)).text)
    assert match
    return match.group(1)


def _event(n: int, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_console_{n:03d}",
        "type": event_type,
        "created": 1_700_000_000 + n,
        "data": {"object": obj},
    }


async def test_webhook_events_filter_page_and_detail(
    console: Console, api: ApiEnv, other_api: ApiEnv, settings: Settings, database: Database
) -> None:
    empty = await console.get("/admin/webhooks")
    assert "No webhook events received in this environment yet" in empty.text
    hostile = {"id": "cus_x", "object": "customer", "name": "<script>alert(1)</script>"}
    events = [_event(i, "customer.updated", {"id": f"cus_{i}", "object": "customer"}) for i in range(27)]
    events.append(_event(99, "invoice.paid", {"id": "in_1", "object": "invoice"}))
    events.append(_event(100, "customer.updated", hostile))
    ref = await _deliver(console, settings, database, events)
    # One event failed for good, as the worker marks it after too many attempts.
    async with database.session() as session:
        row = await session.scalar(select(StripeIntegration).where(StripeIntegration.ref == ref))
        assert row is not None
        env_pk = row.environment_pk
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.environment_pk == env_pk, WebhookEvent.event_id == "evt_console_005")
            .values(status=WebhookStatus.FAILED, attempts=8, error="Stripe said <no>")
        )

    first = await console.get("/admin/webhooks")
    ids = re.findall(r'href="/admin/webhooks/(evt_console_\d+)\?env=', first.text)
    assert len(ids) == 25 and ids[0] == "evt_console_100" and ids[1] == "evt_console_099", "newest first"
    cursor = re.search(r"after=(evt_console_\d+)", first.text)
    assert cursor and cursor.group(1) == ids[-1]
    second = await console.get(f"/admin/webhooks?after={cursor.group(1)}")
    rest = re.findall(r'href="/admin/webhooks/(evt_console_\d+)\?env=', second.text)
    assert len(rest) == 4 and not set(rest) & set(ids) and "after=" not in second.text

    by_type = await console.get("/admin/webhooks?type=invoice.paid")
    assert re.findall(r'href="/admin/webhooks/(evt_console_\d+)\?env=', by_type.text) == ["evt_console_099"]
    assert '<option value="invoice.paid" selected>' in by_type.text
    failed = await console.get(
        "/admin/webhooks?status=FAILED", headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert "<html" not in failed.text
    assert re.findall(r'href="/admin/webhooks/(evt_console_\d+)\?env=', failed.text) == ["evt_console_005"]
    none = await console.get("/admin/webhooks?status=FAILED&type=invoice.paid")
    assert "No event matches these filters." in none.text

    detail = await console.get("/admin/webhooks/evt_console_005")
    assert detail.status_code == 200
    assert '<span class="badge badge-error">Failed</span>' in detail.text
    assert "Stripe said &lt;no&gt;" in detail.text and "delivered by Stripe" in detail.text
    hostile_page = await console.get("/admin/webhooks/evt_console_100")
    assert "<script>alert(1)</script>" not in hostile_page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_page.text
    assert "\n  &#34;data&#34;: {" in hostile_page.text or '\n  "data": {' in hostile_page.text, (
        "pretty-printed"
    )

    # Processed by the worker: the list and the page say so.
    await process_pending(database, settings, utcnow(), environment_pk=env_pk)
    processed = await console.get("/admin/webhooks/evt_console_099")
    assert re.search(r'badge-(ok|muted)">(Processed|Ignored)</span>', processed.text)
    assert "Processed</dt><dd>—" not in processed.text

    # Another environment's events are neither listed nor reachable there.
    theirs = await console.client.get(f"/admin/webhooks?env={other_api.created.environment_id}")
    assert theirs.status_code == 200 and "evt_console_" not in theirs.text
    hidden = await console.client.get(
        f"/admin/webhooks/evt_console_099?env={other_api.created.environment_id}"
    )
    assert hidden.status_code == 404
    assert (await console.get("/admin/webhooks/evt_nope")).status_code == 404
    unknown_cursor = await console.get("/admin/webhooks?after=evt_nope")
    assert unknown_cursor.status_code == 404
