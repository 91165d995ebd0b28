"""Helpers of the widget tests and bench: a seeded catalog, customers in given states, a live
Tollgate server in a thread, a static "host" site on another origin, and Chromium.

The catalog is created through the catalog service (the same rules as the API); the customer
states the paywall must reflect are written straight to the subscription tables, because the
subscriptions service is built elsewhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.catalog import schemas as cs
from app.catalog import service as catalog
from app.catalog.models import BillingPeriod, Plan, PriceVersion, Product
from app.core.keys import sign_customer_token
from app.customers.schemas import CustomerUpsert
from app.customers.service import token_signing_key, upsert_customer
from app.db import Database
from app.environments.models import Environment
from app.environments.service import EnvironmentRef, create_environment
from app.subscriptions.models import (
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
    UsageCounter,
)

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1.min.js"


# An init script for every document of a browser context: in a widget frame it marks each plan
# name for Element Timing as the parser inserts it (before any paint) and keeps, in
# window.__plans, the first one's paint time (a presentation time, on the frame's clock). The
# browser reports it only once painted inside the frame's visible area, never while the frame is
# 0 px high.
PLANS_PAINTED_PROBE = """if (location.pathname.startsWith("/widgets/")) {
  window.__plans = null;
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes)
      if (node.nodeType === 1 && node.matches(".tg-plan-name")) node.setAttribute("elementtiming", "plan");
  }).observe(document, {childList: true, subtree: true});
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (window.__plans === null) window.__plans = entry.renderTime;
  }).observe({type: "element", buffered: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- seed data --------------------------------------------------------------------------------


@dataclass
class Seeded:
    env: EnvironmentRef
    publishable_key: str
    server_key: str
    product_id: str = "app"
    plan_pks: dict[str, int] = field(default_factory=dict)
    version_pks: dict[str, int] = field(default_factory=dict)
    feature_pks: dict[str, int] = field(default_factory=dict)
    addon_pks: dict[str, int] = field(default_factory=dict)
    product_pk: int = 0


def _flat(period: str, amount: int) -> dict[str, Any]:
    return {"billing_period": period, "currency": "usd", "billing_model": "FLAT_FEE", "amount": amount}


async def seed_catalog(database: Database, *, allowed_origins: list[str] | None = None) -> Seeded:
    """Free, Pro (trial, recommended, add-on), Team (per seat), Enterprise (custom)."""
    import msgspec

    def camel(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): camel(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [camel(v) for v in value]
        return value

    def conv(model: Any, data: dict[str, Any]) -> Any:
        return msgspec.convert(camel(data), model)

    async with database.session() as session:
        created = await create_environment(session, f"w-{uuid.uuid4().hex[:10]}")
        row = await session.scalar(select(Environment).where(Environment.slug == created.environment_id))
        assert row is not None
        row.allowed_origins = list(allowed_origins or [])
        env = EnvironmentRef(pk=row.pk, slug=row.slug)
        for data in (
            {"id": "seats", "name": "Seats", "feature_type": "METERED", "meter_type": "FLUCTUATING",
             "unit_singular": "seat", "unit_plural": "seats"},
            {"id": "api-calls", "name": "API calls", "feature_type": "METERED", "meter_type": "INCREMENTAL",
             "unit_singular": "API call", "unit_plural": "API calls"},
            {"id": "sso", "name": "Single sign-on", "feature_type": "BOOLEAN"},
            {"id": "analytics", "name": "Advanced analytics", "feature_type": "BOOLEAN"},
        ):  # fmt: skip
            await catalog.create_feature(session, env, conv(cs.FeatureCreate, data))
        await catalog.create_product(
            session, env, conv(cs.ProductCreate, {"id": "app", "name": "Acme Notes"})
        )
        await catalog.create_addon(
            session,
            env,
            conv(
                cs.AddonCreate,
                {
                    "id": "extra-seats",
                    "product_id": "app",
                    "name": "5 extra seats",
                    "entitlements": [{"feature_id": "seats", "usage_limit": 5}],
                    "charges": [_flat("MONTHLY", 500), _flat("ANNUALLY", 5000)],
                },
            ),
        )
        await catalog.publish_addon(session, env, "extra-seats")
        plans = [
            {"id": "free", "product_id": "app", "name": "Free", "pricing_type": "FREE", "display_order": 0,
             "description": "For trying things out",
             "entitlements": [{"feature_id": "seats", "usage_limit": 2},
                              {"feature_id": "api-calls", "usage_limit": 1000}]},
            {"id": "pro", "product_id": "app", "name": "Pro", "pricing_type": "PAID", "display_order": 1,
             "description": "For growing teams", "recommended": True, "parent_plan_id": "free",
             "default_trial": {"duration_days": 14},
             "entitlements": [{"feature_id": "seats", "usage_limit": 10},
                              {"feature_id": "api-calls", "usage_limit": 10000},
                              {"feature_id": "analytics"}],
             "charges": [_flat("MONTHLY", 2000), _flat("ANNUALLY", 19200)],
             "compatible_addon_ids": ["extra-seats"]},
            {"id": "team", "product_id": "app", "name": "Team", "pricing_type": "PAID", "display_order": 2,
             "description": "Per seat, with SSO", "parent_plan_id": "pro",
             "entitlements": [{"feature_id": "seats", "usage_limit": 50},
                              {"feature_id": "api-calls", "usage_limit": 100000},
                              {"feature_id": "analytics"}, {"feature_id": "sso"}],
             "charges": [{"billing_period": "MONTHLY", "currency": "usd", "billing_model": "PER_UNIT",
                          "amount": 1200, "feature_id": "seats", "min_quantity": 3},
                         {"billing_period": "ANNUALLY", "currency": "usd", "billing_model": "PER_UNIT",
                          "amount": 12000, "feature_id": "seats", "min_quantity": 3}]},
            {"id": "enterprise", "product_id": "app", "name": "Enterprise", "pricing_type": "CUSTOM",
             "display_order": 3, "description": "Volume pricing and support", "parent_plan_id": "team",
             "entitlements": [{"feature_id": "seats", "unlimited": True},
                              {"feature_id": "api-calls", "unlimited": True},
                              {"feature_id": "analytics"}, {"feature_id": "sso"}]},
        ]  # fmt: skip
        for data in plans:
            await catalog.create_plan(session, env, conv(cs.PlanCreate, data))
            await catalog.publish_plan(session, env, data["id"])
        seeded = Seeded(env=env, publishable_key=created.publishable_key, server_key=created.server_key)
        for plan in await session.scalars(select(Plan).where(Plan.environment_pk == env.pk)):
            seeded.plan_pks[plan.ref] = plan.pk
            seeded.product_pk = plan.product_pk
        for version in await session.scalars(
            select(PriceVersion).where(
                PriceVersion.environment_pk == env.pk, PriceVersion.plan_pk.is_not(None)
            )
        ):
            assert version.plan_pk is not None
            seeded.version_pks[next(k for k, v in seeded.plan_pks.items() if v == version.plan_pk)] = (
                version.pk
            )
        from app.catalog.models import Addon, Feature

        for feature in await session.scalars(select(Feature).where(Feature.environment_pk == env.pk)):
            seeded.feature_pks[feature.ref] = feature.pk
        for addon in await session.scalars(select(Addon).where(Addon.environment_pk == env.pk)):
            seeded.addon_pks[addon.ref] = addon.pk
        product = await session.scalar(select(Product).where(Product.environment_pk == env.pk))
        assert product is not None
        seeded.product_pk = product.pk
    return seeded


async def add_customer(
    database: Database, seeded: Seeded, ref: str, *, expires_in: int = 3600
) -> tuple[int, str]:
    """Create a customer; return (customer pk, a valid customer token)."""
    async with database.session() as session:
        await upsert_customer(
            session, seeded.env, CustomerUpsert(id=ref, name=ref.title(), email=f"{ref}@example.com")
        )
        from app.customers.models import Customer

        pk = await session.scalar(
            select(Customer.pk).where(Customer.environment_pk == seeded.env.pk, Customer.ref == ref)
        )
        key = await token_signing_key(session, seeded.env)
    assert pk is not None
    return pk, sign_customer_token(key, ref, int(time.time()) + expires_in)


async def add_subscription(
    database: Database,
    seeded: Seeded,
    customer_pk: int,
    plan: str,
    *,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    period: BillingPeriod = BillingPeriod.MONTHLY,
    trial_days_left: int | None = None,
    scheduled_plan: str | None = None,
    addons: dict[str, int] | None = None,
    usage: dict[str, int] | None = None,
    cancel_in_days: int | None = None,
) -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=3)
    end = start + (dt.timedelta(days=365) if period is BillingPeriod.ANNUALLY else dt.timedelta(days=30))
    ref = f"sub-{uuid.uuid4().hex[:8]}"
    async with database.session() as session:
        sub = Subscription(
            environment_pk=seeded.env.pk,
            ref=ref,
            customer_pk=customer_pk,
            product_pk=seeded.product_pk,
            plan_pk=seeded.plan_pks[plan],
            price_version_pk=seeded.version_pks.get(plan),
            billing_period=period,
            status=status,
            start_date=start,
            billing_anchor=start,
            current_period_start=start,
            current_period_end=end,
            trial_end=now + dt.timedelta(days=trial_days_left, hours=-1)
            if trial_days_left is not None
            else None,
            activated_at=None if status is SubscriptionStatus.IN_TRIAL else start,
            cancel_at=now + dt.timedelta(days=cancel_in_days) if cancel_in_days is not None else None,
            scheduled_change={
                "planPk": seeded.plan_pks[scheduled_plan],
                "planId": scheduled_plan,
                "billingPeriod": period.value,
            }
            if scheduled_plan
            else None,
            scheduled_at=end if scheduled_plan else None,
        )
        session.add(sub)
        await session.flush()
        for addon, quantity in (addons or {}).items():
            session.add(
                SubscriptionAddon(subscription_pk=sub.pk, addon_pk=seeded.addon_pks[addon], quantity=quantity)
            )
        for feature, value in (usage or {}).items():
            session.add(
                UsageCounter(
                    customer_pk=customer_pk,
                    feature_pk=seeded.feature_pks[feature],
                    value=value,
                    window_start=start,
                )
            )
    return ref


# ---- servers ------------------------------------------------------------------------------------


class LiveServer:
    """Tollgate served by uvicorn from a thread, on its own SQLite file."""

    def __init__(
        self,
        database_url: str,
        port: int,
        secret: str = "widget-test-secret-" + "y" * 32,
        extra_routers: list[Any] | None = None,
    ) -> None:
        from app.settings import Settings

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.settings = Settings(
            database_url=database_url,
            secret=secret,
            host="127.0.0.1",
            port=port,
            public_url=self.url,
            embedded_worker=False,
            embedded_sandbox=False,
            log_level="WARNING",
        )
        self.extra_routers = extra_routers or []
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def start(self) -> None:
        import uvicorn

        from app.main import create_app

        app = create_app(self.settings)
        for router in self.extra_routers:
            app.register(router)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not getattr(self._server, "started", False):
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path, port: int) -> Iterator[str]:
    """A plain stdlib web server for host pages: a different origin from Tollgate."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        server.server_close()
