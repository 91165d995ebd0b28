"""Console subscriptions: the customer's subscriptions and entitlements, provision with a preview
first, change plan, cancel, cancel a scheduled change, the /admin/subscriptions/{id} page; and
refusals that change nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.admin import auth
from app.admin.auth import add_operator
from app.db import Database
from app.subscriptions.models import Subscription
from tests.integration.test_admin_screens import PASSWORD, TOKEN_RE, Console, field_error
from tests.support.widget_browser import Seeded, add_customer, add_subscription, seed_catalog


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def shop(
    client: AsyncTestClient[Litestar], database: Database
) -> AsyncIterator[tuple[Console, Seeded]]:
    seeded = await seed_catalog(database)
    client.cookies.clear()
    email = f"subs-{uuid.uuid4().hex[:8]}@example.com"
    async with database.session() as session:
        await add_operator(session, email, PASSWORD)
    login = await client.get("/admin/login")
    token = TOKEN_RE.search(login.text)
    assert token
    signed = await client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "_csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    console = Console(client, seeded.env.slug, email)
    await console.get("/admin")
    yield console, seeded
    client.cookies.clear()


async def _count(database: Database, seeded: Seeded) -> int:
    async with database.session() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.environment_pk == seeded.env.pk)
            )
            or 0
        )


async def test_provision_with_preview_then_change_and_cancel(
    shop: tuple[Console, Seeded], database: Database
) -> None:
    console, seeded = shop
    await add_customer(database, seeded, "ada")
    page = await console.get("/admin/customers/ada")
    assert page.status_code == 200 and "No subscriptions." in page.text
    assert "PLACEHOLDER" not in page.text and 'value="team"' in page.text
    form = {
        "planId": "team",
        "billingPeriod": "MONTHLY",
        "unitQuantities": "seats=4",
        "addonIds": "extra-seats",
        "addonQuantity.extra-seats": "2",
        "couponId": "",
    }
    preview = await console.post("/admin/customers/ada/subscriptions", {**form, "intent": "preview"})
    assert preview.status_code == 200, preview.text
    due = re.search(r'data-testid="due-now">([^<]+)<', preview.text)
    assert due and due.group(1).strip() == "$58"  # 4 × $12 + 2 × $5
    assert "Confirm and provision" in preview.text
    assert await _count(database, seeded) == 0

    previewed = re.search(r'name="previewed" value="([^"]+)"', preview.text)
    assert previewed
    # Values edited after the preview are previewed again, not provisioned unseen.
    edited = {**form, "unitQuantities": "seats=9", "previewed": previewed.group(1).replace("&#34;", '"')}
    again = await console.post("/admin/customers/ada/subscriptions", {**edited, "intent": "confirm"})
    assert again.status_code == 200 and "Confirm and provision" in again.text
    assert await _count(database, seeded) == 0
    confirm = {**form, "previewed": previewed.group(1).replace("&#34;", '"'), "intent": "confirm"}
    done = await console.post("/admin/customers/ada/subscriptions", confirm)
    assert done.status_code == 303
    page = await console.get("/admin/customers/ada")
    sub_id = re.search(r'data-subscription-id="([^"]+)"', page.text)
    assert sub_id and "provisioned" in page.text
    ref = sub_id.group(1)
    assert "<code>seats</code> × 4" in page.text and "<code>extra-seats</code> × 2" in page.text
    assert "customer-entitlements" in page.text and "<code>sso</code>" in page.text

    # The subscription's own page (Stripe metadata links here) links back to its customer.
    sub_page = await console.get(f"/admin/subscriptions/{ref}")
    assert sub_page.status_code == 200 and 'href="/admin/customers/ada?env=' in sub_page.text

    # Change plan: preview (a downgrade, scheduled), confirm, then cancel the scheduled change.
    change = {"planId": "pro", "billingPeriod": "MONTHLY"}
    shown = await console.post(f"/admin/subscriptions/{ref}/change", {**change, "intent": "preview"})
    assert shown.status_code == 200 and "Preview: Downgrade" in shown.text
    seen = re.search(r'name="previewed" value="([^"]+)"', shown.text)
    assert seen
    change["previewed"] = seen.group(1).replace("&#34;", '"')
    confirmed = await console.post(f"/admin/subscriptions/{ref}/change", {**change, "intent": "confirm"})
    assert confirmed.status_code == 303
    sub_page = await console.get(f"/admin/subscriptions/{ref}")
    assert (
        "Change scheduled for the period end." in sub_page.text and "Cancel scheduled change" in sub_page.text
    )
    undone = await console.post(f"/admin/subscriptions/{ref}/cancel-scheduled-change", {"customerId": "ada"})
    assert undone.status_code == 303 and undone.headers["location"].startswith("/admin/customers/ada?")
    page = await console.get("/admin/customers/ada")
    assert "Scheduled change canceled." in page.text and "Cancel scheduled change" not in page.text

    canceled = await console.post(
        f"/admin/subscriptions/{ref}/cancel", {"cancellationTime": "IMMEDIATE", "customerId": "ada"}
    )
    assert canceled.status_code == 303
    page = await console.get("/admin/customers/ada")
    assert "Subscription canceled." in page.text and "Canceled" in page.text


async def test_cancel_at_period_end(shop: tuple[Console, Seeded], database: Database) -> None:
    console, seeded = shop
    pk, _ = await add_customer(database, seeded, "bea")
    ref = await add_subscription(database, seeded, pk, "pro")
    await console.get("/admin/customers/bea")
    done = await console.post(
        f"/admin/subscriptions/{ref}/cancel", {"cancellationTime": "END_OF_BILLING_PERIOD"}
    )
    assert done.status_code == 303 and done.headers["location"].startswith(f"/admin/subscriptions/{ref}?")
    page = await console.get(f"/admin/subscriptions/{ref}")
    assert "Cancellation scheduled for the period end." in page.text and "<dt>Ends</dt>" in page.text


async def test_refusals_show_errors_and_change_nothing(
    shop: tuple[Console, Seeded], database: Database
) -> None:
    console, seeded = shop
    pk, _ = await add_customer(database, seeded, "cy")
    ref = await add_subscription(database, seeded, pk, "pro")
    await console.get("/admin/customers/cy")
    for intent in ("preview", "confirm"):
        ghost = await console.post(
            "/admin/customers/cy/subscriptions",
            {"planId": "ghost", "billingPeriod": "MONTHLY", "intent": intent},
        )
        assert ghost.status_code == 422
        assert "No plan with id &#39;ghost&#39;" in field_error(ghost.text, "f-planId")
    bad_qty = await console.post(
        "/admin/customers/cy/subscriptions",
        {"planId": "team", "billingPeriod": "MONTHLY", "unitQuantities": "seats", "intent": "confirm"},
    )
    assert bad_qty.status_code == 422 and field_error(bad_qty.text, "f-unitQuantities")
    unknown = await console.post(
        f"/admin/subscriptions/{ref}/change", {"planId": "ghost", "intent": "confirm"}
    )
    assert unknown.status_code == 422 and field_error(unknown.text, "f-planId")
    # No CSRF token: refused before anything runs.
    console.token = "forged"
    forged = await console.post(f"/admin/subscriptions/{ref}/cancel", {"cancellationTime": "IMMEDIATE"})
    assert forged.status_code == 403
    assert await _count(database, seeded) == 1
    page = await console.get(f"/admin/subscriptions/{ref}")
    assert "<dt>Ends</dt>" not in page.text and "Active" in page.text
    missing = await console.get("/admin/subscriptions/sub-nope")
    assert missing.status_code == 404
