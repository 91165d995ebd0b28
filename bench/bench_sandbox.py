"""Sandbox throughput: requests per second for simple creates and reads through the official SDK.

Run with `python -m bench.bench_sandbox` (or `main()`); prints a table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.sandbox import running_sandbox

TARGET_PER_SECOND = 300


def _measure(
    label: str, calls: int, workers: int, call: Callable[[int], object]
) -> tuple[str, int, float, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(call, range(calls)))
    elapsed = time.perf_counter() - started
    return label, calls, elapsed, calls / elapsed


def run(calls: int = 600, workers: int = 4) -> list[tuple[str, int, float, float]]:
    rows = []
    with running_sandbox() as sb:
        client = sb.client("sk_test_bench_account_key")
        created = client.v1.customers.create(params={"email": "bench@example.com"})
        product = client.v1.products.create(params={"name": "Bench"})
        rows.append(
            _measure(
                "POST /v1/customers",
                calls,
                workers,
                lambda i: client.v1.customers.create(params={"email": f"c{i}@example.com"}),
            )
        )
        rows.append(
            _measure(
                "POST /v1/products",
                calls,
                workers,
                lambda i: client.v1.products.create(params={"name": f"P{i}"}),
            )
        )
        rows.append(
            _measure(
                "GET /v1/customers/{id}", calls, workers, lambda i: client.v1.customers.retrieve(created.id)
            )
        )
        rows.append(
            _measure(
                "GET /v1/products/{id}", calls, workers, lambda i: client.v1.products.retrieve(product.id)
            )
        )
        rows.append(
            _measure(
                "GET /v1/customers?limit=10",
                calls // 2,
                workers,
                lambda i: client.v1.customers.list(params={"limit": 10}),
            )
        )
    return rows


def main() -> None:
    rows = run()
    print(f"{'request':<30} {'calls':>6} {'seconds':>8} {'req/s':>8}  target {TARGET_PER_SECOND}/s")
    for label, calls, elapsed, rate in rows:
        verdict = "ok" if rate >= TARGET_PER_SECOND else "below"
        print(f"{label:<30} {calls:>6} {elapsed:>8.2f} {rate:>8.0f}  {verdict}")


if __name__ == "__main__":
    main()
