"""Widget benchmark: bytes, time to visible plans in Chromium, server render latency.

    .venv/bin/python -m bench.bench_widgets [--postgres]   (or: python bench/bench_widgets.py)

Starts its own Tollgate (uvicorn, one process, SQLite in a temp dir, seeded with the test
catalog) and a static host page on another origin, then prints one table:

- bytes the host page downloads for the embed (the script), and everything the frame loads
  (HTML, CSS, htmx, frame script), raw and gzip-compressed (level 6, what a compressing
  proxy or CDN sends; Tollgate itself serves them uncompressed);
- time from the host page's navigation start to the paywall's plans painted on screen, cold and
  warm cache: the Element Timing of the plan names inside the frame (a presentation time; the
  browser reports it only once they are painted inside the frame's visible area, so never while
  the frame is still 0 px high), put on the host page's clock through both documents'
  `performance.timeOrigin`; for comparison, when the host hears the frame's ready message, and
  the paint time with Tollgate on the host's own site (its frame then needs no new process);
- GET /widgets/paywall (anonymous and with a customer) at concurrency 1 and 16: the server's
  own render time (its Server-Timing header: access checks, reads, view model, HTML) and the
  latency the client sees, which adds queueing behind the other 15 requests in one process.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from tests.support.widget_browser import (  # noqa: E402
    CHROMIUM,
    PLANS_PAINTED_PROBE,
    add_customer,
    add_subscription,
    free_port,
    seed_catalog,
    static_site,
)

TARGETS = {
    "host_gzip": 5 * 1024,
    "frame_gzip": 40 * 1024,
    "visible_ms": 250.0,
    "p99_ms": 20.0,
}
RUNS = 12  # browser contexts; each loads the host page cold, then warm
HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title>
<script src="host.js"></script><script src="{tollgate}/static/tollgate.js" async></script></head>
<body><tollgate-paywall id="pw" publishable-key="{key}"></tollgate-paywall></body></html>"""
HOST_JS = """window.__ready = null;
document.addEventListener("tollgate:ready", () => { window.__ready = performance.now(); });"""


async def _plans_painted(page: Any) -> float:
    """When the paywall's first plan name was painted, in ms since the host's navigation start.

    Called once `goto` has returned (the host's load event, which waits for the frame's), after a
    pause: any script the bench runs in either page (Playwright's polling runs one on every
    animation frame) while the frame's first paint is pending delays that paint, warm loads by
    about 50 ms on this machine."""
    await asyncio.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frames = [f for f in page.frames if "/widgets/paywall" in f.url]
        if frames:
            # A function, not an expression string: the frame's CSP forbids eval.
            probe = await frames[0].evaluate("() => [window.__plans, performance.timeOrigin]")
            if probe and probe[0]:
                return probe[0] + probe[1] - await page.evaluate("() => performance.timeOrigin")
        await asyncio.sleep(0.02)
    raise TimeoutError("the paywall's plans were not painted")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _start_server(directory: Path, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_SECRET": "bench-secret-" + "z" * 40,
        "TOLLGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TOLLGATE_EMBEDDED_WORKER": "0",
        "TOLLGATE_EMBEDDED_SANDBOX": "0",
        "TOLLGATE_VAR_DIR": str(directory),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def _wait_up(url: str) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("Tollgate did not start")


async def _bytes_and_visible(tollgate: str, host: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    results: dict[str, Any] = {
        "cold": [], "warm": [], "cold_ready": [], "warm_ready": [], "same_site_cold": [], "same_site_warm": []
    }  # fmt: skip
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for run in range(RUNS):
            context = await browser.new_context()
            await context.add_init_script(PLANS_PAINTED_PROBE)
            page = await context.new_page()
            bodies: list[tuple[str, str, bytes]] = []

            async def record(response: Any, sink: list[tuple[str, str, bytes]] = bodies) -> None:
                try:
                    body = await response.body()
                except Exception:  # redirects and aborted requests have no body
                    return
                frame = response.request.frame
                sink.append((response.url, "host" if frame.parent_frame is None else "frame", body))

            page.on("response", record)
            for label in ("cold", "warm"):
                await page.goto(host + "/index.html")
                results[label].append(await _plans_painted(page))
                await page.wait_for_function("window.__ready !== null", timeout=10000)  # mostly at once
                results[label + "_ready"].append(await page.evaluate("window.__ready"))
                if label == "cold":
                    await asyncio.sleep(0.2)  # let the response handlers finish reading bodies
                    page.remove_listener("response", record)
            if run == 0:
                host_js = [
                    b for u, where, b in bodies if where == "host" and u.endswith("/static/tollgate.js")
                ]
                frame = {u: b for u, where, b in bodies if where == "frame"}
                results["host_raw"] = len(host_js[0])
                results["host_gzip"] = len(gzip.compress(host_js[0], 6))
                results["frame_raw"] = sum(len(b) for b in frame.values())
                results["frame_gzip"] = sum(len(gzip.compress(b, 6)) for b in frame.values())
                results["frame_files"] = sorted(
                    (u.split("?")[0].replace(tollgate, ""), len(b), len(gzip.compress(b, 6)))
                    for u, b in frame.items()
                )
            await context.close()
            # Tollgate on the host's own site (localhost, another port; in production a subdomain
            # such as billing.example.com): the frame shares the page's renderer process.
            context = await browser.new_context()
            await context.add_init_script(PLANS_PAINTED_PROBE)
            page = await context.new_page()
            for label in ("cold", "warm"):
                await page.goto(host + "/same-site.html")
                results["same_site_" + label].append(await _plans_painted(page))
            await context.close()
        await browser.close()
    return results


async def _first_render(url: str) -> float:
    """A new process's first paywall (templates compiled, caches filled): measured apart, so the
    browser's first cold load does not carry a once-per-process cost."""
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        response.raise_for_status()
        return float(response.headers["server-timing"].split("dur=")[1])


async def _latency(url: str, concurrency: int, total: int) -> dict[str, float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timings: list[float] = []
    renders: list[float] = []  # the server's own Server-Timing: checks, reads, view model, HTML
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(20):  # warm-up
            (await client.get(url)).raise_for_status()
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                response = await client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                renders.append(float(response.headers["server-timing"].split("dur=")[1]))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "p50": statistics.median(timings),
        "p99": _pct(timings, 0.99),
        "render_p50": statistics.median(renders),
        "render_p99": _pct(renders, 0.99),
        "rps": total / elapsed,
    }


async def run(database_url: str | None = None) -> list[tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        database_url = database_url or f"sqlite+aiosqlite:///{directory / 'bench.db'}"
        host_port, port = free_port(), free_port()
        database = Database(database_url)
        await upgrade_to_head(database)
        seeded = await seed_catalog(database, allowed_origins=[f"http://localhost:{host_port}"])
        customer_pk, token = await add_customer(database, seeded, "bench-customer")
        await add_subscription(database, seeded, customer_pk, "pro", usage={"seats": 3})
        await database.dispose()

        host_dir = directory / "host"
        host_dir.mkdir()
        tollgate = f"http://127.0.0.1:{port}"
        (host_dir / "index.html").write_text(HOST_PAGE.format(tollgate=tollgate, key=seeded.publishable_key))
        (host_dir / "host.js").write_text(HOST_JS)
        same_site = HOST_PAGE.format(tollgate=f"http://localhost:{port}", key=seeded.publishable_key)
        (host_dir / "same-site.html").write_text(same_site)
        server = _start_server(directory, database_url, port)
        try:
            await _wait_up(tollgate)
            anonymous = f"{tollgate}/widgets/paywall?" + urlencode(
                {"publishable-key": seeded.publishable_key}
            )
            first_render = await _first_render(anonymous)
            with static_site(host_dir, host_port) as host:
                browser = await _bytes_and_visible(tollgate, host)
            customer = anonymous + "&" + urlencode({"customer-id": "bench-customer", "customer-token": token})
            latency = {
                ("anonymous", 1): await _latency(anonymous, 1, 200),
                ("anonymous", 16): await _latency(anonymous, 16, 1600),
                ("customer", 1): await _latency(customer, 1, 200),
                ("customer", 16): await _latency(customer, 16, 1600),
            }
        finally:
            server.terminate()
            server.wait(timeout=10)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rows: list[tuple[str, str, str, str]] = [
        (
            "host page: tollgate.js",
            f"{browser['host_gzip'] / 1024:.1f} KB gzip ({browser['host_raw'] / 1024:.1f} KB raw)",
            "≤ 5 KB gzip",
            verdict(browser["host_gzip"] <= TARGETS["host_gzip"]),
        ),
        (
            "inside the frame (all)",
            f"{browser['frame_gzip'] / 1024:.1f} KB gzip ({browser['frame_raw'] / 1024:.1f} KB raw)",
            "≤ 40 KB gzip",
            verdict(browser["frame_gzip"] <= TARGETS["frame_gzip"]),
        ),
    ]
    for path, raw, packed in browser["frame_files"]:
        rows.append((f"  {path}", f"{packed / 1024:.1f} KB gzip ({raw / 1024:.1f} KB raw)", "", ""))
    for label in ("cold", "warm"):
        values = browser[label]
        rows.append(
            (
                f"plans painted, {label} cache (n={len(values)})",
                f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms",
                "≤ 250 ms",
                verdict(statistics.median(values) <= TARGETS["visible_ms"]),
            )
        )
        ready = browser[label + "_ready"]
        rows.append(
            (
                "  host hears 'ready'",
                f"median {statistics.median(ready):.0f} ms, max {max(ready):.0f} ms",
                "",
                "",
            )
        )
        same = browser["same_site_" + label]
        rows.append(
            (
                "  Tollgate on the host's site",
                f"median {statistics.median(same):.0f} ms, max {max(same):.0f} ms",
                "",
                "",
            )
        )
    rows.append(("server's first render after start", f"{first_render:.0f} ms", "", ""))
    for (who, concurrency), stats in latency.items():
        rows.append(
            (
                f"server render, {who}, concurrency {concurrency}",
                f"p50 {stats['render_p50']:.1f} ms, p99 {stats['render_p99']:.1f} ms",
                "p99 ≤ 20 ms" if concurrency == 16 else "",
                verdict(stats["render_p99"] <= TARGETS["p99_ms"]) if concurrency == 16 else "",
            )
        )
        rows.append(
            (
                "  client latency (queueing included)",
                f"p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms, {stats['rps']:.0f} req/s",
                "",
                "",
            )
        )
    rows.append(
        ("machine load average (1 min)", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", "", "")
    )
    return rows


def main() -> None:
    """`--postgres` runs against a fresh database on the test PostgreSQL (127.0.0.1:5432)."""
    database_name = None
    database_url = None
    if "--postgres" in sys.argv:
        from tests.support.databases import create_postgres_database, postgres_url

        database_name = create_postgres_database()
        database_url = postgres_url(database_name)
    try:
        rows = asyncio.run(run(database_url))
    finally:
        if database_name:
            from tests.support.databases import drop_postgres_database

            drop_postgres_database(database_name)
    rows.insert(0, ("database", "PostgreSQL" if database_name else "SQLite", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "result", "target", "")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
