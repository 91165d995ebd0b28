"""Browser tests' building blocks: Debian's Chromium under Playwright, and the real app served live.

    with serve_app(tmp_path) as server, chromium() as browser:
        page = browser.new_page(base_url=server.url)

`serve_app` migrates a fresh SQLite file to head, builds the app with `create_app` and runs it
under uvicorn on 127.0.0.1 and a free port in a background thread. `prepare` runs against
the migrated database before the server starts (create an environment, an operator, ...).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import Browser, sync_playwright

from app.db import Database
from app.main import create_app
from app.migrate import upgrade_to_head
from app.settings import Settings

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@contextmanager
def chromium(**launch_options: Any) -> Iterator[Browser]:
    """A headless Chromium (the system one: Playwright cannot download its own build here)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS, **launch_options
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: Settings
    database_url: str

    def run(self, work: Callable[[Database], Awaitable[Any]]) -> Any:
        """Run async database work against the served database from synchronous test code."""
        return run_with_database(self.database_url, work)


def run_with_database(database_url: str, work: Callable[[Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        database = Database(database_url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    # A thread of its own: the caller may be inside pytest-asyncio's running loop.
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@contextmanager
def serve_app(
    directory: Path,
    *,
    prepare: Callable[[Database], Awaitable[Any]] | None = None,
    **settings_overrides: Any,
) -> Iterator[LiveServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed to uvicorn: no race for the port
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    database_url = f"sqlite+aiosqlite:///{directory / 'tollgate-live.db'}"

    async def migrate(database: Database) -> None:
        await upgrade_to_head(database)
        if prepare is not None:
            await prepare(database)

    run_with_database(database_url, migrate)
    options: dict[str, Any] = {
        "database_url": database_url,
        "secret": "live-test-secret-" + "y" * 40,
        "host": "127.0.0.1",
        "port": port,
        "public_url": url,
        "embedded_worker": False,
        "embedded_sandbox": False,
        **settings_overrides,
    }
    settings = Settings(**options)
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(url=url, settings=settings, database_url=database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
