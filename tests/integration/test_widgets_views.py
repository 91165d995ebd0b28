"""What the paywall, portal and checkout show: prices, periods, entitlements, customer states, usage."""

from __future__ import annotations

import re
import uuid

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.catalog import schemas as cs
from app.catalog import service as catalog
from app.catalog.models import BillingPeriod, PricingType
from app.db import Database
from app.subscriptions.models import SubscriptionStatus
from app.widgets.appearance import DEFAULT_TEXTS
from app.widgets.viewmodels import parse_period, price_view
from tests.support.widget_browser import Seeded, add_customer, add_subscription, seed_catalog

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def seeded(database: Database) -> Seeded:
    return await seed_catalog(database)


def _q(seeded: Seeded, customer: str | None = None, token: str | None = None, **extra: str) -> dict[str, str]:
    query = {"publishable-key": seeded.publishable_key, **extra}
    if customer and token:
        query |= {"customer-id": customer, "customer-token": token}
    return query


def _cards(html: str) -> dict[str, str]:
    """plan id -> the action its button offers."""
    return dict(re.findall(r'data-plan-id="([^"]+)" data-action="([^"]+)"', html))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_anonymous_paywall_lists_published_plans_in_order_with_prices(
    client: AsyncTestClient[Litestar], seeded: Seeded
) -> None:
    page = await client.get("/widgets/paywall", params=_q(seeded))
    assert page.status_code == 200
    html = page.text
    assert list(_cards(html)) == ["free", "pro", "team", "enterprise"]
    assert _cards(html) == {
        "free": "subscribe",
        "pro": "start_trial",
        "team": "subscribe",
        "enterprise": "contact",
    }
    text = _text(html)
    for expected in (
        "Free",
        "$20 / month",
        "Starting at $12 per seat / month",
        "Custom",
        "Start 14-day trial",
        "Contact us",
        "Recommended",
        "Everything in Free, plus:",
        "Everything in Pro, plus:",
        "10,000 API calls / month",
        "Unlimited seats",
        "Single sign-on",
        "5 extra seats $5 / month",
        "Save up to 20%",
    ):
        assert expected in text, expected
    assert 'aria-current="true">Monthly' in html
    # Plain links work without script; htmx swaps the same URL's fragment.
    assert html.count('href="/widgets/paywall?') == 2


async def test_period_switch_returns_a_fragment_for_htmx(
    client: AsyncTestClient[Litestar], seeded: Seeded
) -> None:
    fragment = await client.get(
        "/widgets/paywall", params=_q(seeded, **{"billing-period": "annually"}), headers=HTMX
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="tg-paywall"') and "<html" not in fragment.text
    assert fragment.headers["vary"] == "HX-Request"
    text = _text(fragment.text)
    assert "$192 / year" in text and "$16 / month, billed annually" in text and "$120 per seat / year" in text
    assert "5 extra seats $50 / year" in text


async def test_switch_is_hidden_when_only_one_period_exists(
    client: AsyncTestClient[Litestar], database: Database
) -> None:
    seeded = await seed_catalog(database)
    async with database.session() as session:
        await catalog.create_product(
            session, seeded.env, msgspec.convert({"id": "solo", "name": "Solo"}, cs.ProductCreate)
        )
        plan = {
            "id": "solo-basic",
            "productId": "solo",
            "name": "Basic",
            "pricingType": "PAID",
            "charges": [
                {"billingPeriod": "MONTHLY", "currency": "eur", "billingModel": "FLAT_FEE", "amount": 900}
            ],
        }
        await catalog.create_plan(session, seeded.env, msgspec.convert(plan, cs.PlanCreate))
        await catalog.publish_plan(session, seeded.env, "solo-basic")
    page = await client.get(
        "/widgets/paywall", params=_q(seeded, **{"product-id": "solo", "billing-period": "ANNUALLY"})
    )
    assert page.status_code == 200
    assert 'class="tg-period"' not in page.text and "€9" in page.text
    missing = await client.get("/widgets/paywall", params=_q(seeded, **{"product-id": "nope"}))
    assert missing.status_code == 404 and 'data-error-code="product_not_found"' in missing.text


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, {"free": "subscribe", "pro": "start_trial", "team": "subscribe", "enterprise": "contact"}),
        ({"plan": "free"}, {"free": "current", "pro": "upgrade", "team": "upgrade", "enterprise": "contact"}),
        (
            {"plan": "pro", "status": SubscriptionStatus.IN_TRIAL, "trial_days_left": 3},
            {"free": "downgrade", "pro": "current", "team": "upgrade", "enterprise": "contact"},
        ),
        (
            {"plan": "pro"},
            {"free": "downgrade", "pro": "current", "team": "upgrade", "enterprise": "contact"},
        ),
        (
            {"plan": "team", "scheduled_plan": "pro"},
            {"free": "downgrade", "pro": "scheduled", "team": "current", "enterprise": "contact"},
        ),
        (
            {"plan": "enterprise"},
            {"free": "downgrade", "pro": "downgrade", "team": "downgrade", "enterprise": "current"},
        ),
        (
            {"plan": "pro", "period": BillingPeriod.ANNUALLY},
            {"free": "downgrade", "pro": "current", "team": "upgrade", "enterprise": "contact"},
        ),
        (
            {"plan": "pro", "period": BillingPeriod.ANNUALLY, "view": "MONTHLY"},
            {"free": "downgrade", "pro": "switch_period", "team": "upgrade", "enterprise": "contact"},
        ),
    ],
    ids=[
        "no-subscription",
        "free",
        "trial",
        "paid",
        "scheduled-downgrade",
        "custom",
        "annual-opens-on-annual",
        "annual-viewing-monthly",
    ],
)
async def test_buttons_follow_the_customer_state(
    client: AsyncTestClient[Litestar],
    database: Database,
    seeded: Seeded,
    state: dict[str, object],
    expected: dict[str, str],
) -> None:
    state = dict(state)  # the parameter is shared by the SQLite and PostgreSQL runs
    ref = f"c-{uuid.uuid4().hex[:6]}"
    pk, token = await add_customer(database, seeded, ref)
    view = {"billing-period": str(state.pop("view"))} if "view" in state else {}
    if "plan" in state:
        plan = str(state.pop("plan"))
        await add_subscription(database, seeded, pk, plan, **state)  # pyright: ignore[reportArgumentType]
    page = await client.get("/widgets/paywall", params=_q(seeded, ref, token, **view))
    assert page.status_code == 200, page.text
    assert _cards(page.text) == expected
    text = _text(page.text)
    if expected["pro"] == "scheduled":
        assert "Changes to Pro on" in text and "Starts on" in text and "cancel-scheduled-change" in page.text
    if state.get("status") is SubscriptionStatus.IN_TRIAL:
        assert "3 days left in your trial" in text


async def test_no_second_trial(client: AsyncTestClient[Litestar], database: Database, seeded: Seeded) -> None:
    pk, token = await add_customer(database, seeded, "again")
    await add_subscription(database, seeded, pk, "pro", status=SubscriptionStatus.EXPIRED, trial_days_left=0)
    page = await client.get("/widgets/paywall", params=_q(seeded, "again", token))
    assert _cards(page.text)["pro"] == "subscribe"
    assert "Start 14-day trial" not in page.text


async def test_portal_shows_subscription_addons_and_usage(
    client: AsyncTestClient[Litestar], database: Database, seeded: Seeded
) -> None:
    pk, token = await add_customer(database, seeded, "user")
    await add_subscription(
        database,
        seeded,
        pk,
        "pro",
        addons={"extra-seats": 2},
        usage={"seats": 7, "api-calls": 10000},
        cancel_in_days=20,
    )
    page = await client.get("/widgets/portal", params=_q(seeded, "user", token))
    assert page.status_code == 200
    text = _text(page.text)
    for expected in (
        "Pro",
        "Active",
        "Monthly",
        "$20 / month",
        "Ends on",
        "5 extra seats × 2",
        "7 of 20 seats",
        "10,000 of 10,000 API calls",
        "Resets on",
        "Change plan",
    ):
        assert expected in text, expected
    assert 'class="tg-usage is-full"' in page.text
    assert 'href="/widgets/paywall?' in page.text and "from=portal" in page.text

    pk, token = await add_customer(database, seeded, "newbie")
    empty = await client.get("/widgets/portal", params=_q(seeded, "newbie", token))
    assert "You have no active subscription yet." in empty.text and "Choose a plan" in empty.text


async def test_checkout_summarises_the_plan(
    client: AsyncTestClient[Litestar], database: Database, seeded: Seeded
) -> None:
    _, token = await add_customer(database, seeded, "buyer")
    page = await client.get("/widgets/checkout", params=_q(seeded, "buyer", token, **{"plan-id": "pro"}))
    assert page.status_code == 200
    text = _text(page.text)
    assert "14-day free trial, then" in text and "$20 / month" in text and "Subscribe" in text
    # The order summary is the subscriptions preview: nothing due during the trial.
    assert "Due now $0" in text and "Extra seats" not in text
    missing = await client.get("/widgets/checkout", params=_q(seeded, "buyer", token))
    assert missing.status_code == 400 and 'data-error-code="plan_required"' in missing.text
    anonymous = await client.get("/widgets/checkout", params=_q(seeded, **{"plan-id": "pro"}))
    assert anonymous.status_code == 401


async def test_text_overrides(client: AsyncTestClient[Litestar], seeded: Seeded) -> None:
    page = await client.get(
        "/widgets/paywall",
        params=_q(seeded, **{"t.paywall_title": "Pricing", "t.start_trial": "Try {days} days free"}),
    )
    assert ">Pricing</h1>" in page.text and "Try 14 days free" in page.text


def test_price_views_of_each_billing_model() -> None:
    from app.catalog.models import BillingModel, Charge, Feature, FeatureType, PriceVersion

    api = Feature(ref="api", name="API calls", feature_type=FeatureType.METERED, unit_singular="call")
    seat = Feature(ref="seat", name="Seats", feature_type=FeatureType.METERED, unit_singular="seat")

    def version(*charges: Charge) -> PriceVersion:
        return PriceVersion(version=1, charges=list(charges))

    monthly = BillingPeriod.MONTHLY
    tiered = Charge(
        billing_period=monthly,
        currency="usd",
        billing_model=BillingModel.TIERED,
        feature=seat,
        tiers=[
            {"upTo": 10, "unitAmount": 800, "flatAmount": 0},
            {"upTo": None, "unitAmount": 600, "flatAmount": 0},
        ],
    )
    flat = Charge(billing_period=monthly, currency="usd", billing_model=BillingModel.FLAT_FEE, amount=4900)
    usage = Charge(
        billing_period=monthly, currency="usd", billing_model=BillingModel.USAGE_BASED, amount=2, feature=api
    )
    texts = DEFAULT_TEXTS
    view = price_view(PricingType.PAID, version(tiered), monthly, texts)
    assert (view.prefix, view.amount, view.suffix) == ("Starting at", "$8", "per seat / month")
    view = price_view(PricingType.PAID, version(flat, usage), monthly, texts)
    assert (view.prefix, view.amount, view.suffix, view.extras) == (
        "Starting at",
        "$49",
        "/ month",
        ("+ $0.02 per call",),
    )
    assert price_view(PricingType.PAID, version(flat), BillingPeriod.ANNUALLY, texts).kind == "unavailable"
    assert price_view(PricingType.FREE, None, monthly, texts).amount == "Free"
    assert parse_period("annual") is BillingPeriod.ANNUALLY and parse_period("weekly") is None
