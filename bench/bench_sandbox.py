"""Sandbox throughput: requests per second for simple creates and reads through the official SDK.

The sandbox runs as its own process (as `tollgate sandbox` does), so the SDK client measuring it
does not share its interpreter. Run with `python -m bench.bench_sandbox` or call `main()`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import stripe

ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_SECOND = 300
SERVER = (
    "import sys, uvicorn; from app.sandbox.server import Sandbox; "
    "port = int(sys.argv[1]); "
    "uvicorn.run(Sandbox(sys.argv[2], f'http://127.0.0.1:{port}'), host='127.0.0.1', port=port, log_level='warning')"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), to tell server cost from client cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def sandbox_process() -> Iterator[tuple[str, int]]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as folder:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(Path(folder) / "sandbox.db")], cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", process.pid
        finally:
            process.terminate()
            process.wait(timeout=10)


Row = tuple[str, int, float, float, float | None]


def _measure(label: str, calls: int, workers: int, pid: int, call: Callable[[int], object]) -> Row:
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(call, range(calls)))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(pid)
    server_rate = None
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        server_rate = calls / (cpu_after - cpu_before)
    return label, calls, elapsed, calls / elapsed, server_rate


def run(calls: int = 600, workers: int = 4) -> list[Row]:
    with sandbox_process() as (base, pid):
        client = stripe.StripeClient(
            "sk_test_bench_account_key",
            base_addresses={"api": base, "connect": base, "files": base},
            max_network_retries=0,
        )
        customer = client.v1.customers.create(params={"email": "bench@example.com"})
        product = client.v1.products.create(params={"name": "Bench"})
        return [
            _measure(
                "POST /v1/customers",
                calls,
                workers,
                pid,
                lambda i: client.v1.customers.create(params={"email": f"c{i}@example.com"}),
            ),
            _measure(
                "POST /v1/products",
                calls,
                workers,
                pid,
                lambda i: client.v1.products.create(params={"name": f"P{i}"}),
            ),
            _measure(
                "GET /v1/customers/{id}",
                calls,
                workers,
                pid,
                lambda i: client.v1.customers.retrieve(customer.id),
            ),
            _measure(
                "GET /v1/products/{id}",
                calls,
                workers,
                pid,
                lambda i: client.v1.products.retrieve(product.id),
            ),
            _measure(
                "GET /v1/customers?limit=10",
                calls // 2,
                workers,
                pid,
                lambda i: client.v1.customers.list(params={"limit": 10}),
            ),
        ]


def main() -> None:
    rows = run()
    # req/s: wall clock with the SDK client on the same machine; per server CPU s: what one
    # core of sandbox work answers (the client's own cost left out).
    print(
        f"{'request':<30} {'calls':>6} {'seconds':>8} {'req/s':>8} {'per server CPU s':>17}  target {TARGET_PER_SECOND}/s"
    )
    for label, calls, elapsed, rate, server_rate in rows:
        verdict = "ok" if rate >= TARGET_PER_SECOND else "below"
        server = f"{server_rate:>17.0f}" if server_rate is not None else f"{'n/a':>17}"
        print(f"{label:<30} {calls:>6} {elapsed:>8.2f} {rate:>8.0f} {server}  {verdict}")


if __name__ == "__main__":
    main()
