"""Core benchmark: entitlement checks and usage ingestion against a real server over loopback.

Targets (issue 2, on 2 cores): >= 2,000 checks/s with p99 <= 15 ms at concurrency 32, and
>= 5,000 usage events/s in batches of 1,000. Run on SQLite and, when reachable, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import platform
import random
import sys
import time

from bench.loadgen import Connection, json_body, print_table, run_load
from bench.server import RunningServer, postgres_bench_url, tollgate_server

CUSTOMERS = 1000
CHECK_SECONDS = 10.0
USAGE_BATCHES = 20
BATCH_SIZE = 1000


async def _call(
    conn: Connection, server: RunningServer, method: str, path: str, body: object | None = None
) -> bytes:
    headers = {"X-API-KEY": server.server_key, "Content-Type": "application/json"}
    status, data = await conn.request(
        method, "/api/v1" + path, headers, json_body(body) if body is not None else b""
    )
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
    return data


async def seed(server: RunningServer) -> None:
    conn = Connection("127.0.0.1", server.port)
    for feature in [
        {"id": "api-calls", "name": "API calls", "featureType": "METERED", "meterType": "INCREMENTAL"},
        {"id": "seats", "name": "Seats", "featureType": "METERED", "meterType": "FLUCTUATING"},
        {"id": "sso", "name": "SSO", "featureType": "BOOLEAN"},
    ]:
        await _call(conn, server, "POST", "/features", feature)
    await _call(conn, server, "POST", "/products", {"id": "app", "name": "App"})
    await _call(
        conn,
        server,
        "POST",
        "/plans",
        {
            "id": "pro",
            "productId": "app",
            "name": "Pro",
            "pricingType": "PAID",
            "entitlements": [
                {"featureId": "api-calls", "usageLimit": 10**12, "resetPeriod": "MONTH"},
                {"featureId": "seats", "usageLimit": 50},
                {"featureId": "sso"},
            ],
            "charges": [
                {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": 4900}
            ],
        },
    )
    await _call(conn, server, "POST", "/plans/pro/publish")
    await conn.close()

    async def seed_customers(worker: int) -> None:
        c = Connection("127.0.0.1", server.port)
        for i in range(worker, CUSTOMERS, 8):
            await _call(c, server, "POST", "/customers", {"id": f"c{i}", "name": f"Customer {i}"})
            await _call(c, server, "POST", "/subscriptions", {"customerId": f"c{i}", "planId": "pro"})
        await c.close()

    await asyncio.gather(*(seed_customers(w) for w in range(8)))


async def bench_checks(server: RunningServer) -> tuple[float, float, float, int]:
    headers = {"X-API-KEY": server.server_key}
    features = ["api-calls", "seats", "sso"]

    def request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
        customer = rng.randrange(CUSTOMERS)
        feature = features[rng.randrange(3)]
        return "GET", f"/api/v1/customers/c{customer}/entitlements/{feature}?requestedUsage=1", headers, b""

    result = await run_load("127.0.0.1", server.port, request, concurrency=32, duration=CHECK_SECONDS)
    return result.rate, result.percentile(0.50), result.percentile(0.99), result.errors


async def bench_usage(server: RunningServer) -> tuple[float, int]:
    counter = itertools.count()
    now = dt.datetime.now(dt.UTC).isoformat()

    def batch() -> bytes:
        usages = []
        for _ in range(BATCH_SIZE):
            n = next(counter)
            usages.append(
                {
                    "customerId": f"c{n % CUSTOMERS}",
                    "featureId": "api-calls",
                    "value": 1,
                    "updateBehavior": "DELTA",
                    "idempotencyKey": f"bench-{n}",
                    "timestamp": now,
                }
            )
        return json_body({"usages": usages})

    bodies = [batch() for _ in range(USAGE_BATCHES)]
    queue = list(bodies)
    errors = 0

    async def sender() -> None:
        nonlocal errors
        conn = Connection("127.0.0.1", server.port)
        headers = {"X-API-KEY": server.server_key, "Content-Type": "application/json"}
        while queue:
            body = queue.pop()
            status, _ = await conn.request("POST", "/api/v1/usage", headers, body)
            errors += status >= 300
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(2)))
    elapsed = time.perf_counter() - started
    return USAGE_BATCHES * BATCH_SIZE / elapsed, errors


def run_backend(name: str, url: str | None) -> list[str]:
    with tollgate_server(url) as server:
        asyncio.run(seed(server))
        rate, p50, p99, check_errors = asyncio.run(bench_checks(server))
        usage_rate, usage_errors = asyncio.run(bench_usage(server))
    return [
        name,
        f"{rate:,.0f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{usage_rate:,.0f}",
        str(check_errors + usage_errors),
    ]


def main() -> None:
    rows = [run_backend("SQLite", None)]
    pg = postgres_bench_url()
    if pg is None:
        print("PostgreSQL is not reachable on 127.0.0.1:5432: its row is SKIPPED", file=sys.stderr)
    else:
        rows.append(run_backend("PostgreSQL", pg))
    print_table(
        f"Core: entitlement checks (concurrency 32, {CUSTOMERS} customers) and usage ingestion "
        f"(batches of {BATCH_SIZE}) — {dt.date.today()} on {platform.machine()}, 2 web workers",
        ["database", "checks/s", "p50 ms", "p99 ms", "usage events/s", "errors"],
        rows,
    )


if __name__ == "__main__":
    main()
