"""Widget actions through the subscriptions service: provision, confirm with preview, schedule,
cancel, checkout; and each refusal changes nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.catalog.models import Plan
from app.db import Database
from app.subscriptions import service as subscriptions
from app.subscriptions.models import Subscription
from tests.conftest import problem_code
from tests.support.widget_browser import Seeded, add_customer, add_subscription, seed_catalog

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def shop(database: Database) -> tuple[Seeded, dict[str, str], dict[str, int]]:
    seeded = await seed_catalog(database)
    tokens: dict[str, str] = {}
    pks: dict[str, int] = {}
    for name in ("alice", "bob"):
        pks[name], tokens[name] = await add_customer(database, seeded, name)
    return seeded, tokens, pks


async def _form(
    client: AsyncTestClient[Litestar], seeded: Seeded, customer: str, token: str, widget: str = "paywall"
) -> dict[str, str]:
    query = {"publishable-key": seeded.publishable_key, "customer-id": customer, "customer-token": token}
    page = await client.get(f"/widgets/{widget}", params=query)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return {**query, "csrf": match.group(1)}


async def _subs(database: Database, customer_pk: int) -> list[tuple[str, str, str, Any, Any]]:
    async with database.session() as session:
        rows = await session.execute(
            select(
                Subscription.ref,
                Plan.ref,
                Subscription.status,
                Subscription.scheduled_change,
                Subscription.cancel_at,
            )
            .join(Plan, Plan.pk == Subscription.plan_pk)
            .where(Subscription.customer_pk == customer_pk)
            .order_by(Subscription.pk)
        )
        return [(r[0], r[1], r[2].value, r[3], r[4]) for r in rows]


def _changed(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return json.loads(response.headers["hx-trigger"])["tollgate:subscription-changed"]


async def test_free_plan_at_once_then_upgrade_with_preview_then_downgrade_scheduled_and_cancelled(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str], dict[str, int]]
) -> None:
    seeded, tokens, pks = shop
    form = await _form(client, seeded, "alice", tokens["alice"])
    free = await client.post(
        "/widgets/actions/select-plan", data={**form, "plan-id": "free", "action": "subscribe"}, headers=HTMX
    )
    event = _changed(free)
    assert event["planId"] == "free" and event["status"] == "ACTIVE"
    assert 'data-plan-id="free" data-action="current"' in free.text  # the paywall, re-rendered
    [(sub_id, plan, *_)] = await _subs(database, pks["alice"])
    assert (sub_id, plan) == (event["subscriptionId"], "free")

    # Team has no trial: the preview is shown before anything changes.
    choose = {**form, "plan-id": "team", "action": "upgrade", "billing-period": "MONTHLY"}
    confirm = await client.post("/widgets/actions/select-plan", data=choose, headers=HTMX)
    assert confirm.status_code == 200 and "hx-trigger" not in confirm.headers
    assert 'data-change-type="UPGRADE"' in confirm.text and "Due now" in confirm.text
    assert (await _subs(database, pks["alice"]))[0][1] == "free"
    upgraded = await client.post(
        "/widgets/actions/select-plan", data={**choose, "confirm": "1"}, headers=HTMX
    )
    assert _changed(upgraded) == {"subscriptionId": sub_id, "planId": "team", "status": "ACTIVE"}
    assert (await _subs(database, pks["alice"]))[0][1] == "team"
    portal = await client.get("/widgets/portal", params={k: v for k, v in form.items() if k != "csrf"})
    assert '<h2 class="tg-plan-name" id="tg-sub-1">Team</h2>' in portal.text

    # A downgrade says when it takes effect, and is scheduled.
    down = {**form, "plan-id": "pro", "action": "downgrade", "billing-period": "MONTHLY"}
    explained = await client.post("/widgets/actions/select-plan", data=down, headers=HTMX)
    assert "Takes effect at the end of your current period" in explained.text
    scheduled = await client.post("/widgets/actions/select-plan", data={**down, "confirm": "1"}, headers=HTMX)
    assert _changed(scheduled)["planId"] == "team"
    assert 'data-plan-id="pro" data-action="scheduled"' in scheduled.text
    [(_, plan, _, change, _)] = await _subs(database, pks["alice"])
    assert plan == "team" and change is not None

    undone = await client.post(
        "/widgets/actions/cancel-scheduled-change",
        data={**form, "subscription-id": sub_id, "view": "paywall"},
        headers=HTMX,
    )
    assert _changed(undone)["planId"] == "team"
    assert (await _subs(database, pks["alice"]))[0][3] is None
    assert 'data-plan-id="pro" data-action="downgrade"' in undone.text


async def test_trial_starts_at_once_and_portal_cancels_at_period_end_after_confirming(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str], dict[str, int]]
) -> None:
    seeded, tokens, pks = shop
    form = await _form(client, seeded, "bob", tokens["bob"])
    trial = await client.post(
        "/widgets/actions/select-plan", data={**form, "plan-id": "pro", "action": "start_trial"}, headers=HTMX
    )
    assert _changed(trial)["status"] == "IN_TRIAL"
    [(sub_id, *_)] = await _subs(database, pks["bob"])

    portal_form = await _form(client, seeded, "bob", tokens["bob"], "portal")
    ask = await client.post(
        "/widgets/actions/cancel-subscription", data={**portal_form, "subscription-id": sub_id}, headers=HTMX
    )
    assert ask.status_code == 200 and "hx-trigger" not in ask.headers
    assert "Your subscription will end on" in ask.text and 'name="confirm" value="1"' in ask.text
    assert (await _subs(database, pks["bob"]))[0][4] is None
    done = await client.post(
        "/widgets/actions/cancel-subscription",
        data={**portal_form, "subscription-id": sub_id, "confirm": "1"},
        headers=HTMX,
    )
    assert _changed(done)["subscriptionId"] == sub_id
    assert "Ends on" in done.text and "Cancel subscription" not in done.text
    assert (await _subs(database, pks["bob"]))[0][4] is not None


async def test_refusals_change_nothing(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str], dict[str, int]]
) -> None:
    seeded, tokens, pks = shop
    bobs = await add_subscription(database, seeded, pks["bob"], "team", scheduled_plan="pro")
    before = await _subs(database, pks["bob"])
    form = await _form(client, seeded, "alice", tokens["alice"])
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("select-plan", {"plan-id": "free", "csrf": "1.x"}, 403, "invalid_csrf_token"),
        ("select-plan", {"plan-id": "free", "customer-token": tokens["bob"]}, 403, "invalid_customer_token"),
        ("select-plan", {"plan-id": "ghost", "confirm": "1"}, 404, "plan_not_found"),
        ("cancel-subscription", {"subscription-id": bobs, "confirm": "1"}, 404, "subscription_not_found"),
        ("cancel-subscription", {"subscription-id": bobs, "csrf": ""}, 403, "invalid_csrf_token"),
        ("cancel-scheduled-change", {"subscription-id": bobs}, 404, "subscription_not_found"),
        ("checkout", {"plan-id": "ghost"}, 404, "plan_not_found"),
        ("checkout", {"plan-id": "team", "unit.seats": "1"}, 400, "invalid_quantity"),
    ]
    for action, change, status, code in cases:
        response = await client.post(f"/widgets/actions/{action}", data={**form, **change}, headers=HTMX)
        assert response.status_code == status, (action, change, response.text)
        assert problem_code(response) == code
        assert "hx-trigger" not in response.headers
    assert await _subs(database, pks["alice"]) == []
    assert await _subs(database, pks["bob"]) == before
    # Bob cancelling a scheduled change he does not have is refused by the service's rule.
    bob_form = await _form(client, seeded, "bob", tokens["bob"], "portal")
    await client.post(
        "/widgets/actions/cancel-scheduled-change", data={**bob_form, "subscription-id": bobs}, headers=HTMX
    )
    again = await client.post(
        "/widgets/actions/cancel-scheduled-change", data={**bob_form, "subscription-id": bobs}, headers=HTMX
    )
    assert again.status_code == 409 and problem_code(again) == "no_scheduled_change"


async def test_checkout_live_summary_and_subscribe(
    client: AsyncTestClient[Litestar], database: Database, shop: tuple[Seeded, dict[str, str], dict[str, int]]
) -> None:
    seeded, tokens, pks = shop
    query = {
        "publishable-key": seeded.publishable_key,
        "customer-id": "alice",
        "customer-token": tokens["alice"],
        "plan-id": "team",
    }
    page = await client.get("/widgets/checkout", params=query)
    assert 'name="unit.seats"' in page.text and 'value="3"' in page.text and "$36" in page.text
    live = await client.get(
        "/widgets/checkout",
        params={**query, "billing-period": "monthly", "unit.seats": "5", "addon.extra-seats": "2"},
        headers=HTMX,
    )
    assert live.status_code == 200 and live.text.lstrip().startswith('<section id="tg-checkout"')
    due = re.search(r'data-testid="due-now">([^<]+)<', live.text)
    assert due and due.group(1) == "$70"  # 5 seats × $12 + 2 × $5
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    form = {
        **query,
        "csrf": csrf.group(1),
        "billing-period": "monthly",
        "unit.seats": "5",
        "addon.extra-seats": "2",
    }
    done = await client.post("/widgets/actions/checkout", data=form, headers=HTMX)
    assert _changed(done)["planId"] == "team"
    assert "You are subscribed to Team." in done.text
    [(sub_id, *_)] = await _subs(database, pks["alice"])
    async with database.session() as session:
        sub = await subscriptions.get_subscription(session, seeded.env.pk, sub_id)
    assert [(u.feature_id, u.quantity) for u in sub.unit_quantities] == [("seats", 5)]
    assert [(a.addon_id, a.quantity) for a in sub.addons] == [("extra-seats", 2)]
