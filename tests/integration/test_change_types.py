"""The paywall's batched change types agree with the preview, plan by plan, for every state."""

from __future__ import annotations

from sqlalchemy import select

from app.catalog.models import BillingPeriod, Plan, PriceVersion, PricingType
from app.core.errors import TollgateError
from app.db import Database
from app.subscriptions import service
from app.subscriptions.models import SubscriptionStatus
from app.subscriptions.schemas import ProvisionRequest
from app.widgets import queries
from tests.support.widget_browser import add_customer, add_subscription, seed_catalog


async def test_change_types_match_the_preview_of_each_plan(database: Database) -> None:
    seeded = await seed_catalog(database)
    states = {
        "none": None,
        "free": {"plan": "free"},
        "pro-addons": {"plan": "pro", "addons": {"extra-seats": 2}},
        "team-scheduled": {"plan": "team", "scheduled_plan": "pro"},
        "trial": {"plan": "pro", "status": SubscriptionStatus.IN_TRIAL, "trial_days_left": 5},
        "enterprise-annual": {"plan": "enterprise", "period": BillingPeriod.ANNUALLY},
    }
    for name, state in states.items():
        pk, _ = await add_customer(database, seeded, name)
        if state is not None:
            await add_subscription(database, seeded, pk, state.pop("plan"), **state)
    compared = 0
    async with database.session() as session:
        plans = list(
            await session.scalars(
                select(Plan).where(
                    Plan.environment_pk == seeded.env.pk, Plan.pricing_type != PricingType.CUSTOM
                )
            )
        )
        prices = await queries.latest_price_versions(session, PriceVersion.plan_pk, [p.pk for p in plans])
        offers = [
            (p, prices[p.pk].pk if p.pk in prices else None, prices[p.pk].charges if p.pk in prices else [])
            for p in plans
        ]
        for name in states:
            for period in BillingPeriod:
                kinds = await service.change_types(session, seeded.env.pk, name, offers, period)
                expected = {}
                for plan in plans:
                    request = ProvisionRequest(customer_id=name, plan_id=plan.ref, billing_period=period)
                    try:
                        preview = await service.preview_subscription(session, seeded.env.pk, request)
                    except TollgateError:
                        continue
                    expected[plan.pk] = preview.change_type
                assert kinds == expected, (name, period)
                compared += len(expected)
    assert compared >= 30
