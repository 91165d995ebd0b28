"""Sync benchmark: 2,000 customers with paid subscriptions and a catalog of 20 plans into the
sandbox with its rate limit at 100 requests/s, then webhook ingestion.

Reports Stripe calls per entity against the minimum needed, the achieved request rate as a
share of the budget (target >= 90 %), wall time, duplicates (must be 0), and webhook events
accepted per second (target >= 1,000/s). Run with `python -m bench.bench_sync` (or `main()`);
`BENCH_SYNC_CUSTOMERS` shrinks the run. SQLite file database unless BENCH_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from sqlalchemy import insert, select

from app.billing.integration import IntegrationService
from app.billing.jobs import drain
from app.billing.models import StripeIntegration, StripeMode, SyncState, SyncStatus
from app.billing.schemas import IntegrationConnect
from app.billing.sync import SyncEngine, all_entities, mark_pending
from app.catalog.models import (
    BillingModel,
    BillingPeriod,
    Charge,
    Plan,
    PlanStatus,
    PriceVersion,
    PricingType,
    Product,
)
from app.customers.models import Customer
from app.db import Database, utcnow
from app.environments.models import Environment
from app.environments.service import EnvironmentRef, create_environment
from app.migrate import upgrade_to_head
from app.sandbox.webhooks import sign
from app.settings import Settings, load_settings
from app.subscriptions.models import Subscription, SubscriptionStatus
from bench.loadgen import Connection, json_body, run_load
from bench.server import TOLLGATE_CMD, free_port, tollgate_env, tollgate_server
from tests.support.sandbox import SandboxControl

CUSTOMERS = int(os.environ.get("BENCH_SYNC_CUSTOMERS", "2000"))
PLANS = 20
SANDBOX_LIMIT = 100.0
# Our budget sits just under the sandbox's limit: its windows are calendar seconds.
BUDGET = 95.0


async def seed(database: Database, env_pk: int) -> None:
    now = utcnow()
    async with database.session() as session:
        product = Product(environment_pk=env_pk, ref="acme", name="Acme")
        session.add(product)
        await session.flush()
        plans: list[tuple[int, int]] = []
        for i in range(PLANS):
            plan = Plan(
                environment_pk=env_pk,
                ref=f"plan-{i}",
                product_pk=product.pk,
                name=f"Plan {i}",
                pricing_type=PricingType.PAID,
                status=PlanStatus.PUBLISHED,
            )
            session.add(plan)
            await session.flush()
            version = PriceVersion(environment_pk=env_pk, plan_pk=plan.pk, version=1)
            session.add(version)
            await session.flush()
            session.add(
                Charge(
                    price_version_pk=version.pk,
                    billing_period=BillingPeriod.MONTHLY,
                    currency="usd",
                    billing_model=BillingModel.FLAT_FEE,
                    amount=1000 + i * 100,
                )
            )
            plans.append((plan.pk, version.pk))
        await session.flush()
        await session.execute(
            insert(Customer),
            [
                {
                    "environment_pk": env_pk,
                    "ref": f"c{i}",
                    "name": f"Customer {i}",
                    "email": f"c{i}@example.com",
                    "currency": "usd",
                }
                for i in range(CUSTOMERS)
            ],
        )
        customer_pks = dict(
            (
                await session.execute(
                    select(Customer.ref, Customer.pk).where(Customer.environment_pk == env_pk)
                )
            ).all()  # type: ignore[arg-type]
        )
        await session.execute(
            insert(Subscription),
            [
                {
                    "environment_pk": env_pk,
                    "ref": f"s{i}",
                    "customer_pk": customer_pks[f"c{i}"],
                    "product_pk": product.pk,
                    "plan_pk": plans[i % PLANS][0],
                    "price_version_pk": plans[i % PLANS][1],
                    "billing_period": BillingPeriod.MONTHLY,
                    "status": SubscriptionStatus.ACTIVE,
                    "start_date": now,
                    "billing_anchor": now,
                    "current_period_start": now,
                    "current_period_end": now + dt.timedelta(days=30),
                    "activated_at": now,
                }
                for i in range(CUSTOMERS)
            ],
        )


async def count_all(client: object, resource: str) -> tuple[int, int]:
    """(objects, distinct tollgateEntityId) in a Stripe list, all pages."""
    seen: list[str] = []
    params: dict[str, object] = {"limit": 100}
    if resource == "subscriptions":
        params["status"] = "all"
    service = getattr(client.v1, resource)  # type: ignore[attr-defined]
    while True:
        page = await service.list_async(params=params)
        seen += [(o.metadata.to_dict() if o.metadata else {}).get("tollgateEntityId", "") for o in page.data]
        if not page.has_more:
            break
        params["starting_after"] = page.data[-1].id
    return len(seen), len(set(seen))


class RunningSandboxControl:
    def __init__(self, base_url: str) -> None:
        self.control = SandboxControl(base_url)


async def run_sync(database_url: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as folder, sandbox_process(folder) as sandbox_url:
        sandbox = RunningSandboxControl(sandbox_url)
        url = database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        settings = Settings(
            database_url=url,
            secret="bench-secret-" + "x" * 40,
            public_url="http://127.0.0.1:9",
            embedded_worker=False,
            embedded_sandbox=False,
            stripe_sandbox_url=sandbox_url,
            stripe_api_base=sandbox_url,
            stripe_rate_limit=BUDGET,
            var_dir=folder,
        )
        database = Database(url)
        await upgrade_to_head(database)
        async with database.session() as session:
            created = await create_environment(session, f"bench-{int(time.time())}")
            env_pk = await session.scalar(
                select(Environment.pk).where(Environment.slug == created.environment_id)
            )
            assert env_pk is not None
            await IntegrationService(session, settings).connect(
                EnvironmentRef(pk=env_pk, slug=created.environment_id),
                IntegrationConnect(mode=StripeMode.SANDBOX),
            )
        async with database.session() as session:
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.environment_pk == env_pk)
            )
            assert row is not None and row.webhook_endpoint_id
            # Nothing listens at this public URL: without the endpoint the sandbox spends no
            # time on failing deliveries (webhook ingestion is measured on its own below).
            await (
                IntegrationService(session, settings)
                .client(row)
                .v1.webhook_endpoints.delete_async(row.webhook_endpoint_id)
            )
        await seed(database, env_pk)
        async with database.session() as session:
            await mark_pending(session, await all_entities(session, env_pk), utcnow())
        sandbox.control.rate_limit(SANDBOX_LIMIT)
        # The workers' own budget: the token bucket row all worker processes share.
        engine = SyncEngine(database, settings, burst=5)
        engine.concurrency = int(os.environ.get("BENCH_SYNC_CONCURRENCY", "16"))
        started = time.perf_counter()
        while True:
            did = await engine.ingest_outbox(utcnow()) + await engine.sync_due(utcnow(), limit=200)
            if not did:
                async with database.session() as session:
                    waiting = await session.scalar(
                        select(SyncState.pk).where(SyncState.status == SyncStatus.PENDING).limit(1)
                    )
                if waiting is None:
                    break
                await asyncio.sleep(0.2)  # a retry waits for its backoff
        wall = time.perf_counter() - started
        await drain(engine)
        sandbox.control.rate_limit(None)
        async with database.session() as session:
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.environment_pk == env_pk)
            )
            assert row is not None
            client = IntegrationService(session, settings).client(row)
            statuses = dict(
                (await session.execute(select(SyncState.status, SyncState.pk))).all()  # type: ignore[arg-type]
            )
        # The sandbox's own ceiling for the heaviest call, without us: concurrent direct creates.
        some = (await client.v1.customers.list_async(params={"limit": 1})).data[0].id
        price = (await client.v1.prices.list_async(params={"limit": 1})).data[0].id
        probe_started = time.perf_counter()
        await asyncio.gather(
            *(
                client.v1.subscriptions.create_async(
                    params={
                        "customer": some,
                        "items": [{"price": price}],
                        "collection_method": "send_invoice",
                        "days_until_due": 30,
                    }
                )
                for _ in range(60)
            )
        )
        ceiling = 60 / (time.perf_counter() - probe_started)
        customers, distinct_customers = await count_all(client, "customers")
        subs, distinct_subs = await count_all(client, "subscriptions")
        await database.dispose()
        calls = sum(engine.stats.calls.values())
        minimum = PLANS * 2 + CUSTOMERS * 2
        return {
            "calls": dict(sorted(engine.stats.calls.items())),
            "seconds": engine.stats.seconds,
            "total_calls": calls,
            "minimum_calls": minimum,
            "wall": wall,
            "rate": calls / wall,
            "customers": customers,
            "subscriptions": subs - 60,
            "ceiling": ceiling,
            "duplicates": (customers - distinct_customers) + (subs - 60 - (distinct_subs - 1)),
            "failed": engine.stats.failed,
            "statuses": sorted(s.value for s in statuses),
        }


@contextlib.contextmanager
def sandbox_process(folder: str) -> Iterator[str]:
    """The sandbox in its own process, so its work does not share our interpreter's GIL."""
    port = free_port()
    process = subprocess.Popen(
        [*TOLLGATE_CMD, "sandbox", "--port", str(port), "--database", f"{folder}/sandbox.db"],
        env=tollgate_env(dict(os.environ)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_sandbox/status", timeout=1):
                    break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


async def run_webhooks(
    database_url: str | None = None, concurrency: int = 32, seconds: float = 5.0
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as folder, sandbox_process(folder) as sandbox_url:
        os.environ["TOLLGATE_STRIPE_SANDBOX_URL"] = sandbox_url
        with tollgate_server(database_url, workers=int(os.environ.get("BENCH_WEB_PROCESSES", "1"))) as server:
            conn = Connection("127.0.0.1", server.port)
            headers = {"X-API-KEY": server.server_key, "Content-Type": "application/json"}
            status, data = await conn.request(
                "PUT", "/api/v1/integrations/stripe", headers, json_body({"mode": "SANDBOX"})
            )
            assert status == 200, data
            integration_id = msgspec.json.decode(data)["integrationId"]
            await conn.close()
            settings = load_settings(server.env)
            database = Database(settings.database_url)
            async with database.session() as session:
                row = await session.scalar(
                    select(StripeIntegration).where(StripeIntegration.ref == integration_id)
                )
                assert row is not None
                secret = IntegrationService(session, settings).webhook_secret(row) or ""
            await database.dispose()
            counter = itertools.count()
            path = f"/webhooks/stripe/{integration_id}"

            def make_request(_: object) -> tuple[str, str, dict[str, str], bytes]:
                body = msgspec.json.encode(
                    {
                        "id": f"evt_bench_{next(counter)}",
                        "object": "event",
                        "type": "invoice.paid",
                        "created": 1,
                        "data": {"object": {"id": "in_x", "object": "invoice"}},
                    }
                ).decode()
                return (
                    "POST",
                    path,
                    {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"},
                    body.encode(),
                )

            result = await run_load(
                "127.0.0.1", server.port, make_request, concurrency=concurrency, duration=seconds
            )
        return {"http_rate": result.rate, "errors": float(result.errors), "p99": result.percentile(0.99)}


def print_sync(label: str, database_url: str | None) -> None:
    result = asyncio.run(run_sync(database_url))
    calls = result["calls"]
    assert isinstance(calls, dict)
    print(
        f"\nStripe sync: {CUSTOMERS} customers with paid subscriptions + {PLANS} plans, sandbox limit {SANDBOX_LIMIT:.0f}/s, budget {BUDGET:.0f}/s, {label}"
    )
    print(f"{'Stripe call':<28} {'count':>7}")
    seconds = result["seconds"]
    assert isinstance(seconds, dict)
    for name, count in calls.items():
        print(f"{name:<28} {count:>7}   avg {1000 * seconds[name] / count:.0f} ms")
    total, minimum = result["total_calls"], result["minimum_calls"]
    assert isinstance(total, int) and isinstance(minimum, int)
    rate = float(result["rate"])  # type: ignore[arg-type]
    print(f"{'total calls':<28} {total:>7}   minimum needed {minimum} ({total / minimum:.2f}x)")
    print(f"{'calls per entity':<28} {total / (PLANS + 2 * CUSTOMERS):>7.2f}")
    print(f"{'wall time (s)':<28} {float(result['wall']):>7.1f}")  # type: ignore[arg-type]
    print(
        f"{'achieved rate (req/s)':<28} {rate:>7.1f}   {rate / BUDGET:.0%} of budget, {rate / SANDBOX_LIMIT:.0%} of the sandbox limit (target >= 90%)"
    )
    ceiling_share = rate / min(BUDGET, float(result["ceiling"]))  # type: ignore[arg-type]
    ceiling = float(result["ceiling"])  # type: ignore[arg-type]
    print(
        f"{'sandbox ceiling':<28} {ceiling:>7.1f}   subscriptions.create/s, 60 direct concurrent creates without Tollgate"
    )
    print(f"{'share of attainable rate':<28} {ceiling_share:>7.0%}   achieved / min(budget, sandbox ceiling)")
    print(f"{'Stripe customers':<28} {result['customers']:>7}")
    print(f"{'Stripe subscriptions':<28} {result['subscriptions']:>7}")
    print(f"{'duplicates':<28} {result['duplicates']:>7}   (must be 0)")
    print(f"{'failed':<28} {result['failed']:>7}")


def main() -> None:
    database_url = os.environ.get("BENCH_DATABASE_URL")
    label = "PostgreSQL" if database_url and "postgres" in database_url else "SQLite"
    if not os.environ.get("BENCH_WEBHOOKS_ONLY"):
        print_sync(label, database_url)
    if os.environ.get("BENCH_SYNC_ONLY"):
        return
    hooks = asyncio.run(run_webhooks(database_url))
    print(f"\nWebhook ingestion (signed events, verified and stored, concurrency 32, {label})")
    print(f"{'path':<34} {'events/s':>9}  target 1000/s")
    verdict = "ok" if hooks["http_rate"] >= 1000 else "below"
    print(
        f"{'POST /webhooks/stripe/{id}':<34} {hooks['http_rate']:>9.0f}  {verdict}"
        f"  (p99 {hooks['p99']:.0f} ms, errors {hooks['errors']:.0f};"
        f" {os.environ.get('BENCH_WEB_PROCESSES', '1')} web process(es), load generator in this one)"
    )


if __name__ == "__main__":
    main()
