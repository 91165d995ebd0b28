"""The demo catalog and customers that `make run` seeds into an empty database.

Everything goes through the same services the API uses, so the demo is also a smoke test of
the rules. The demo environment's keys are kept in var/demo-keys.json (owner-only) so that
every `make run` can print them; real environments show their server key once.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth import add_operator
from app.admin.models import Operator
from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration, StripeMode
from app.billing.schemas import IntegrationConnect
from app.catalog import schemas as cs
from app.catalog import service as catalog
from app.customers import service as customers
from app.customers.schemas import CustomerUpsert
from app.db import Database
from app.environments.models import Environment
from app.environments.service import CreatedEnvironment, EnvironmentRef, create_environment
from app.settings import Settings

DEMO_ENVIRONMENT = "demo"
DEMO_OPERATOR_EMAIL = "admin@example.com"

FEATURES: list[dict[str, Any]] = [
    {"id": "seats", "name": "Seats", "featureType": "METERED", "meterType": "FLUCTUATING", "unitSingular": "seat", "unitPlural": "seats"},
    {"id": "projects", "name": "Projects", "featureType": "NUMBER", "unitSingular": "project", "unitPlural": "projects"},
    {"id": "api-calls", "name": "API calls", "featureType": "METERED", "meterType": "INCREMENTAL", "unitSingular": "call", "unitPlural": "calls"},
    {"id": "analytics", "name": "Advanced analytics", "featureType": "BOOLEAN"},
    {"id": "sso", "name": "Single sign-on", "featureType": "BOOLEAN"},
    {"id": "audit-log", "name": "Audit log", "featureType": "BOOLEAN"},
]  # fmt: skip


def _flat(monthly: int, annually: int) -> list[dict[str, Any]]:
    return [
        {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": monthly},
        {"billingPeriod": "ANNUALLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": annually},
    ]


PLANS: list[dict[str, Any]] = [
    {
        "id": "free", "productId": "acme", "name": "Free", "pricingType": "FREE", "displayOrder": 0,
        "description": "For individuals getting started.",
        "entitlements": [
            {"featureId": "seats", "usageLimit": 1},
            {"featureId": "projects", "usageLimit": 3},
            {"featureId": "api-calls", "usageLimit": 1000, "resetPeriod": "MONTH"},
        ],
    },
    {
        "id": "basic", "productId": "acme", "name": "Basic", "pricingType": "PAID", "displayOrder": 1,
        "description": "For small teams.",
        "defaultTrial": {"durationDays": 14, "trialEndBehavior": "CONVERT_TO_PAID"},
        "entitlements": [
            {"featureId": "seats", "usageLimit": 5},
            {"featureId": "projects", "usageLimit": 20},
            {"featureId": "api-calls", "usageLimit": 50000, "resetPeriod": "MONTH"},
            {"featureId": "analytics"},
        ],
        "charges": _flat(2900, 29000),
        "compatibleAddonIds": ["extra-seats"],
    },
    {
        "id": "pro", "productId": "acme", "name": "Pro", "pricingType": "PAID", "displayOrder": 2,
        "description": "For growing companies.", "recommended": True, "parentPlanId": "basic",
        "entitlements": [
            {"featureId": "seats", "usageLimit": 25},
            {"featureId": "projects", "unlimited": True},
            {"featureId": "api-calls", "usageLimit": 500000, "resetPeriod": "MONTH", "hasSoftLimit": True},
            {"featureId": "sso"},
        ],
        "charges": [
            *_flat(9900, 99000),
            {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "USAGE_BASED", "featureId": "api-calls", "amount": 1},
        ],
        "compatibleAddonIds": ["extra-seats"],
    },
    {
        "id": "enterprise", "productId": "acme", "name": "Enterprise", "pricingType": "CUSTOM", "displayOrder": 3,
        "description": "Talk to us.", "parentPlanId": "pro",
        "entitlements": [{"featureId": "seats", "unlimited": True}, {"featureId": "audit-log"}],
    },
]  # fmt: skip

ADDONS: list[dict[str, Any]] = [
    {
        "id": "extra-seats", "productId": "acme", "name": "10 Seats", "maxQuantity": 10,
        "entitlements": [{"featureId": "seats", "usageLimit": 10}],
        "charges": _flat(2000, 20000),
    }
]  # fmt: skip

COUPONS: list[dict[str, Any]] = [
    {
        "id": "launch-20",
        "name": "Launch 20% off",
        "percentOff": 20,
        "duration": "REPEATING",
        "durationInMonths": 3,
    }
]

CUSTOMERS: list[dict[str, Any]] = [
    {"id": "demo-customer", "name": "Ada Lovelace", "email": "ada@example.com",
     "billingInfo": {"address": {"line1": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"}}},
    {"id": "grace", "name": "Grace Hopper", "email": "grace@example.com"},
    {"id": "linus", "name": "Linus Torvalds", "email": "linus@example.com"},
]  # fmt: skip


def _as(type_: type[Any], data: dict[str, Any]) -> Any:
    return msgspec.json.decode(msgspec.json.encode(data), type=type_)


async def seed_catalog(session: AsyncSession, env: EnvironmentRef) -> None:
    await catalog.create_product(
        session, env, _as(cs.ProductCreate, {"id": "acme", "name": "Acme", "description": "The Acme app"})
    )
    for feature in FEATURES:
        await catalog.create_feature(session, env, _as(cs.FeatureCreate, feature))
    for addon in ADDONS:
        await catalog.create_addon(session, env, _as(cs.AddonCreate, addon))
        await catalog.publish_addon(session, env, addon["id"])
    for plan in PLANS:
        await catalog.create_plan(session, env, _as(cs.PlanCreate, plan))
        await catalog.publish_plan(session, env, plan["id"])
    for coupon in COUPONS:
        await catalog.create_coupon(session, env, _as(cs.CouponCreate, coupon))
    for customer in CUSTOMERS:
        await customers.upsert_customer(session, env, _as(CustomerUpsert, customer))


def keys_file(var_dir: Path) -> Path:
    return var_dir / "demo-keys.json"


def _write_keys(var_dir: Path, created: CreatedEnvironment, operator_password: str) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    path = keys_file(var_dir)
    data = msgspec.to_builtins(created) | {
        "operatorEmail": DEMO_OPERATOR_EMAIL,
        "operatorPassword": operator_password,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data))


def read_demo_keys(var_dir: Path) -> dict[str, str] | None:
    path = keys_file(var_dir)
    return json.loads(path.read_text()) if path.exists() else None


async def seed_demo_if_empty(database: Database, var_dir: Path) -> bool:
    """Seed the demo environment when the database has no environment at all. True if seeded."""
    async with database.session() as session:
        if await session.scalar(select(Environment.pk).limit(1)) is not None:
            return False
        created = await create_environment(session, DEMO_ENVIRONMENT, "Demo")
        env_pk = await session.scalar(select(Environment.pk).where(Environment.slug == DEMO_ENVIRONMENT))
        assert env_pk is not None
        await seed_catalog(session, EnvironmentRef(pk=env_pk, slug=DEMO_ENVIRONMENT))
        # A demo console login, unless the instance already has an operator.
        password = secrets.token_urlsafe(12)
        if await session.scalar(select(Operator.pk).limit(1)) is None:
            await add_operator(session, DEMO_OPERATOR_EMAIL, password)
        else:
            password = ""
    _write_keys(var_dir, created, password)
    return True


async def connect_demo_sandbox(database: Database, settings: Settings) -> bool:
    """Connect the demo environment to the sandbox (Sandbox mode), once. True if it connected.

    So that upgrading on /demo goes through Checkout and "Manage billing" works out of the box.
    An environment that was ever connected (or disconnected on purpose) is left as it is.
    The SDK reaches the sandbox over HTTP, so the server must already be listening.
    """
    async with database.session() as session:
        env = await session.scalar(select(Environment).where(Environment.slug == DEMO_ENVIRONMENT))
        if env is None:
            return False
        known = await session.scalar(
            select(StripeIntegration.pk).where(StripeIntegration.environment_pk == env.pk)
        )
        if known is not None:
            return False
        await IntegrationService(session, settings).connect(
            EnvironmentRef(pk=env.pk, slug=env.slug), IntegrationConnect(mode=StripeMode.SANDBOX)
        )
    return True
