"""Sync status in the console: billing ids with dashboard links, reasons, failures with Retry,
the /admin/sync page (failures first, filters) and Stripe's links back to us. Reconcile now:
test_reconcile_runs.py."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from app.billing.jobs import drain
from app.billing.models import SyncState, SyncStatus
from app.billing.sync import SyncEngine
from app.db import Database
from app.settings import Settings
from tests.conftest import ApiEnv
from tests.integration import test_admin_screens as screens
from tests.integration import test_sync_rules as rules
from tests.integration.test_admin_screens import Console
from tests.integration.test_sync_rules import Synced, charge
from tests.support.sandbox import RunningSandbox, new_test_key

# The console's and the sync tests' fixtures, reused rather than copied.
cheap_password_hashing = screens.cheap_password_hashing
console = screens.console
synced = rules.synced


async def paid_plan(api: ApiEnv, ref: str = "pro", amount: int = 1200) -> None:
    if (await api.get("/products/acme")).status_code == 404:
        await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post",
        "/plans",
        {
            "id": ref,
            "productId": "acme",
            "name": ref.title(),
            "pricingType": "PAID",
            "charges": [charge(amount)],
        },
    )
    await api.ok("post", f"/plans/{ref}/publish", status=200)


async def ten_percent(api: ApiEnv) -> None:
    await api.ok("post", "/coupons", {"id": "c10", "name": "Ten", "percentOff": 10, "duration": "ONCE"})


def stripe_cell(page_html: str) -> str:
    """The sync status block(s) of a page, as text with the links' targets kept."""
    blocks = re.findall(
        r'<div class="sync-status[^"]*" data-sync-status="[^"]+"[^>]*>.*?</div>', page_html, re.S
    )
    assert blocks, "no sync status on the page"
    return "\n".join(blocks)


def row_of(page_html: str, ref: str) -> str:
    for row in re.findall(r"<tr[^>]*>.*?</tr>", page_html, re.S):
        if f"<code>{ref}</code></a>" in row:
            return row
    raise AssertionError(f"no row for {ref}")


async def set_status(
    synced: Synced, status: SyncStatus, message: str, entity_type: str | None = None
) -> None:
    """Put the environment's sync states (of one type) in a status, as the engine would have."""
    query = update(SyncState).where(SyncState.environment_pk == synced.env_pk)
    if entity_type:
        query = query.where(SyncState.entity_type == entity_type)
    async with synced.database.session() as session:
        await session.execute(query.values(status=status, error_message=message))


async def test_synced_plan_shows_billing_id_dashboard_link_and_synced(
    console: Console, synced: Synced
) -> None:
    await paid_plan(synced.api)
    await synced.drain()
    product_id = (await synced.states("plan"))["plan:pro"]["billingId"]
    assert product_id
    link = f"{synced.settings.sandbox_api_base}/dashboard/{product_id}"
    page = await console.get("/admin/plans/pro")
    cell = stripe_cell(page.text)
    assert 'data-sync-status="SYNCED"' in cell and ">Synced<" in cell
    assert f'href="{link}"' in cell and f"<code>{product_id}</code>" in cell
    assert 'class="stripe-mark"' in cell
    listed = await console.get("/admin/plans")
    row = row_of(listed.text, "pro")
    assert f'href="{link}"' in row and ">Synced<" in row
    # The link opens that product on the sandbox's dashboard.
    assert synced.stripe.v1.products.retrieve(product_id).metadata["tollgateEntityId"] == "pro"


async def test_lists_read_sync_states_in_one_query(
    console: Console, synced: Synced, database: Database
) -> None:
    for i in range(4):
        await paid_plan(synced.api, f"p{i}", 1000 + i)
    await synced.drain()
    # Not the engine's statements: count what the list asks the database, per entity shown.
    from sqlalchemy import event

    statements: list[str] = []
    app_engine = console.client.app.state["database"].engine.sync_engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(app_engine, "before_cursor_execute", seen)
    try:
        listed = await console.get("/admin/plans")
    finally:
        event.remove(app_engine, "before_cursor_execute", seen)
    assert listed.text.count(">Synced<") == 4
    assert sum("sync_states" in s for s in statements) == 1, statements
    assert sum("outbox_events" in s for s in statements) == 1, statements


async def test_not_synced_customer_shows_the_reason(console: Console, synced: Synced) -> None:
    await synced.api.ok("post", "/customers", {"id": "free-cus", "name": "Free"})
    await synced.drain()
    page = await console.get("/admin/customers/free-cus")
    cell = stripe_cell(page.text)
    assert 'data-sync-status="NOT_SYNCED"' in cell and "Will not be synced" in cell
    assert "The customer has no subscription that Stripe must bill." in cell
    listed = await console.get("/admin/customers")
    assert "Will not be synced" in row_of(listed.text, "free-cus")


async def test_not_connected_environment_shows_a_hint(console: Console, api: ApiEnv) -> None:
    await ten_percent(api)
    page = await console.get("/admin/coupons/c10")
    assert "Not connected to Stripe" in stripe_cell(page.text)
    assert "Reconcile now" not in (await console.get("/admin/sync")).text


async def test_failed_sync_shows_stripes_message_and_retry_requeues(
    console: Console, synced: Synced, stripe_sandbox: RunningSandbox
) -> None:
    stripe_sandbox.control.add_fault(
        method="POST",
        path="/v1/products",
        status=400,
        error_type="invalid_request_error",
        message="Product names may not contain a control character.",
    )
    try:
        await paid_plan(synced.api, "broken")
        await synced.drain()
    finally:
        stripe_sandbox.control.clear_faults()
    page = await console.get("/admin/plans/broken")
    cell = stripe_cell(page.text)
    assert 'data-sync-status="FAILED"' in cell
    assert "Product names may not contain a control character." in cell
    assert 'action="/admin/sync/plan/broken/retry?env=' in cell and ">Retry</button>" in cell
    listed = await console.get("/admin/plans")
    assert ">Retry</button>" in row_of(listed.text, "broken")

    retried = await console.post("/admin/sync/plan/broken/retry", {"next": f"/admin/plans?env={console.env}"})
    assert retried.status_code == 303 and retried.headers["location"] == f"/admin/plans?env={console.env}"
    assert (await synced.states("plan"))["plan:broken"]["status"] == "PENDING"
    after = await console.get("/admin/plans")
    assert "Plan broken is queued to sync again." in after.text
    assert ">Pending<" in row_of(after.text, "broken")
    # The plan's page polls its status while it is on its way, and stops once it settled.
    waiting = stripe_cell((await console.get("/admin/plans/broken")).text)
    poll = f'hx-get="/admin/sync/plan/broken/status?env={console.env}" hx-trigger="every 2s"'
    assert 'data-sync-status="PENDING"' in waiting and poll in waiting
    polled = await console.get("/admin/sync/plan/broken/status", headers={"HX-Request": "true"})
    assert polled.text.strip().startswith('<div class="sync-status"') and poll in polled.text
    await synced.drain()
    settled = await console.get("/admin/sync/plan/broken/status", headers={"HX-Request": "true"})
    assert 'data-sync-status="SYNCED"' in settled.text and "hx-trigger" not in settled.text
    page = await console.get("/admin/plans/broken")
    assert 'data-sync-status="SYNCED"' in stripe_cell(page.text)
    # Without a `next`, Retry returns to the entity's page.
    await set_status(synced, SyncStatus.FAILED, "Stripe said no")
    plain = await console.post("/admin/sync/plan/broken/retry", {})
    assert plain.status_code == 303 and plain.headers["location"] == f"/admin/plans/broken?env={console.env}"


async def test_retry_needs_the_csrf_token_and_this_environments_entity(
    console: Console, synced: Synced, other_api: ApiEnv, database: Database
) -> None:
    await paid_plan(synced.api)
    await synced.drain()
    await set_status(synced, SyncStatus.FAILED, "Stripe said no")
    await console.get("/admin/plans/pro")
    forged = await console.client.post(
        f"/admin/sync/plan/pro/retry?env={console.env}",
        content="next=%2Fadmin",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "security token" in forged.text
    assert (await synced.states("plan"))["plan:pro"]["status"] == "FAILED"
    # Another environment's plan of the same id is not this environment's to retry.
    await other_api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await other_api.ok(
        "post", "/plans", {"id": "theirs", "productId": "acme", "name": "T", "pricingType": "FREE"}
    )
    missing = await console.post("/admin/sync/plan/theirs/retry", {})
    assert missing.status_code == 404 and "Not found" in missing.text
    unknown = await console.post("/admin/sync/widget/pro/retry", {})
    assert unknown.status_code == 400 and "entityType must be one of" in html.unescape(unknown.text)
    assert (await synced.states("plan"))["plan:pro"]["status"] == "FAILED"


async def test_sync_page_orders_failures_first_and_filters(
    console: Console, synced: Synced, database: Database
) -> None:
    await paid_plan(synced.api)
    await ten_percent(synced.api)
    await synced.api.ok("post", "/customers", {"id": "cus-1"})
    await synced.api.ok(
        "post", "/subscriptions", {"customerId": "cus-1", "planId": "pro", "subscriptionId": "s-1"}
    )
    await synced.drain()
    # A failure and a pending entity, older than the synced ones.
    await set_status(synced, SyncStatus.FAILED, "Stripe is unhappy with the plan", "plan")
    await set_status(synced, SyncStatus.PENDING, "", "coupon")
    page = await console.get("/admin/sync")
    assert page.status_code == 200
    order = re.findall(r'data-sync-row="([^"]+)"', page.text)
    assert order[:2] == ["plan/pro", "coupon/c10"], order
    assert set(order[2:]) == {"customer/cus-1", "subscription/s-1"}
    assert "Stripe is unhappy with the plan" in page.text and ">Retry</button>" in page.text
    assert f'href="/admin/plans/pro?env={console.env}"' in page.text
    assert f'href="/admin/subscriptions/s-1?env={console.env}"' in page.text
    failed = await console.get("/admin/sync?status=FAILED")
    assert re.findall(r'data-sync-row="([^"]+)"', failed.text) == ["plan/pro"]
    subs = await console.get(
        "/admin/sync?entity_type=subscription", headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert subs.text.lstrip().startswith('<div id="results">')
    assert re.findall(r'data-sync-row="([^"]+)"', subs.text) == ["subscription/s-1"]
    none = await console.get("/admin/sync?entity_type=coupon&status=FAILED")
    assert "No sync state matches these filters." in none.text
    bad = await console.get("/admin/sync?status=BROKEN")
    assert bad.status_code == 400
    # The Retry on the sync page comes back to it, with its filters.
    assert f'name="next" value="/admin/sync?env={console.env}&amp;status=FAILED"' in failed.text


async def test_sync_page_pages_in_attention_order(
    console: Console, synced: Synced, database: Database
) -> None:
    for i in range(27):
        await synced.api.ok(
            "post", "/coupons", {"id": f"c{i:02}", "name": f"C{i}", "percentOff": 5, "duration": "ONCE"}
        )
    await synced.drain()
    async with database.session() as session:
        await session.execute(
            update(SyncState)
            .where(SyncState.environment_pk == synced.env_pk, SyncState.entity_pk.in_(
                select(SyncState.entity_pk).where(SyncState.environment_pk == synced.env_pk).order_by(SyncState.pk).limit(2)
            ))
            .values(status=SyncStatus.FAILED, error_message="no")
        )  # fmt: skip
    first = await console.get("/admin/sync")
    rows = re.findall(r'data-sync-row="coupon/([^"]+)"', first.text)
    assert rows[:2] == ["c01", "c00"] and len(rows) == 25
    cursor = re.search(r'href="(/admin/sync\?[^"]*after=[^"]+)"', first.text)
    assert cursor
    second = await console.client.get(html.unescape(cursor.group(1)))
    rest = re.findall(r'data-sync-row="coupon/([^"]+)"', second.text)
    assert len(rest) == 2 and not set(rest) & set(rows)


async def test_stripe_metadata_links_open_each_entitys_page(
    console: Console, synced: Synced, database: Database
) -> None:
    api = synced.api
    await paid_plan(api)
    await api.ok(
        "post",
        "/addons",
        {
            "id": "extra",
            "productId": "acme",
            "name": "Extra",
            "pricingType": "PAID",
            "charges": [charge(500)],
        },
    )
    await api.ok("post", "/addons/extra/publish", status=200)
    await ten_percent(api)
    await api.ok("post", "/customers", {"id": "cus|1+a@b", "name": "Linked"})
    await api.ok(
        "post", "/subscriptions", {"customerId": "cus|1+a@b", "planId": "pro", "subscriptionId": "sub-1"}
    )
    await synced.drain()
    states = await synced.states()
    assert {k: s["status"] for k, s in states.items()} == {
        "plan:pro": "SYNCED", "addon:extra": "SYNCED", "coupon:c10": "SYNCED",
        "customer:cus|1+a@b": "SYNCED", "subscription:sub-1": "SYNCED",
    }  # fmt: skip
    s = synced.stripe.v1
    objects = {
        "plan": s.products.retrieve(states["plan:pro"]["billingId"]),
        "addon": s.products.retrieve(states["addon:extra"]["billingId"]),
        "coupon": s.coupons.retrieve(states["coupon:c10"]["billingId"]),
        "customer": s.customers.retrieve(states["customer:cus|1+a@b"]["billingId"]),
        "subscription": s.subscriptions.retrieve(states["subscription:sub-1"]["billingId"]),
    }
    headings = {
        "plan": "Pro",
        "addon": "Extra",
        "coupon": "Ten",
        "customer": "Linked",
        "subscription": "Subscription sub-1",
    }
    for kind, obj in objects.items():
        url = obj.metadata["tollgateEntityUrl"]
        assert url.startswith(synced.settings.public_url + "/admin/"), url
        parts = urlsplit(url)
        path = parts.path + "?" + parts.query
        page = await console.client.get(path)
        assert page.status_code == 200, (kind, url, page.status_code)
        assert f"<h1>{html.escape(headings[kind])}</h1>" in page.text, (kind, url)
        assert 'data-sync-status="SYNCED"' in page.text
    # Signed out, the same link goes through the login page and back.
    console.client.cookies.clear()
    url = urlsplit(objects["subscription"].metadata["tollgateEntityUrl"])
    out = await console.client.get(url.path + "?" + url.query, follow_redirects=False)
    assert out.status_code == 303
    assert (
        out.headers["location"] == f"/admin/login?next=%2Fadmin%2Fsubscriptions%2Fsub-1%3Fenv%3D{console.env}"
    )


async def test_a_change_waiting_for_the_worker_shows_pending(console: Console, synced: Synced) -> None:
    await synced.api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await synced.api.ok(
        "post",
        "/plans",
        {"id": "next", "productId": "acme", "name": "Next", "pricingType": "PAID", "charges": [charge(900)]},
    )
    await synced.drain()
    draft = stripe_cell((await console.get("/admin/plans/next")).text)
    assert 'data-sync-status="NOT_SYNCED"' in draft and "Draft plans and add-ons reach Stripe" in draft
    assert "hx-trigger" not in draft
    # Published: the stored state still says "draft" until the worker picks the change up.
    await synced.api.ok("post", "/plans/next/publish", status=200)
    queued = stripe_cell((await console.get("/admin/plans/next")).text)
    assert 'data-sync-status="PENDING"' in queued and "hx-trigger" in queued and "Draft plans" not in queued
    assert 'data-sync-status="PENDING"' in row_of((await console.get("/admin/plans")).text, "next")
    await synced.drain()
    assert 'data-sync-status="SYNCED"' in stripe_cell((await console.get("/admin/plans/next")).text)


async def test_test_mode_links_open_the_right_dashboard_section(
    console: Console, api: ApiEnv, database: Database, settings: Settings
) -> None:
    # Test mode reaches the run's sandbox too (conftest), but links point at Stripe's dashboard.
    await api.ok("put", "/integrations/stripe", {"mode": "TEST", "apiKey": new_test_key()}, status=200)
    await paid_plan(api)
    await ten_percent(api)
    await api.ok("post", "/customers", {"id": "cus-t"})
    await api.ok(
        "post", "/subscriptions", {"customerId": "cus-t", "planId": "pro", "subscriptionId": "sub-t"}
    )
    await drain(SyncEngine(database, settings))
    states = {s["entityType"]: s for s in (await api.ok("get", "/sync-states?limit=100"))["data"]}
    sections = {
        "plan": "products",
        "coupon": "coupons",
        "customer": "customers",
        "subscription": "subscriptions",
    }
    for kind, section in sections.items():
        state = states[kind]
        assert state["status"] == "SYNCED", state
        assert state["dashboardUrl"] == f"https://dashboard.stripe.com/test/{section}/{state['billingId']}"
    # Our product and coupon ids look alike (tg_...): the plan's link is still the product's.
    assert states["plan"]["billingId"].startswith("tg_") and states["coupon"]["billingId"].startswith("tg_")
    page = await console.get("/admin/coupons/c10")
    assert f'href="https://dashboard.stripe.com/test/coupons/{states["coupon"]["billingId"]}"' in page.text
