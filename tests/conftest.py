"""Shared fixtures: the real app on a real SQLite file and, when reachable, a real PostgreSQL.

Tests isolate themselves by creating their own Tollgate environment (every row belongs to
one), so one migrated database serves the whole run and nothing is truncated between tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database
from app.environments.service import CreatedEnvironment, create_environment
from app.main import create_app
from app.migrate import upgrade_to_head
from app.settings import Settings
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_reachable,
    postgres_url,
    sqlite_url,
)
from tests.support.sandbox import RunningSandbox, running_sandbox

PG_AVAILABLE = postgres_reachable()
PG_SKIP_REASON = "PostgreSQL is not reachable on 127.0.0.1:5432: PostgreSQL variants of the tests are SKIPPED"
BACKENDS = ["sqlite", "postgres"]


def pytest_report_header(config: pytest.Config) -> str:
    if PG_AVAILABLE:
        return "databases: SQLite and PostgreSQL (127.0.0.1:5432)"
    return "databases: SQLite only. " + PG_SKIP_REASON


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # Printed even with -q, so a run that silently lost PostgreSQL cannot pass unnoticed.
    if PG_AVAILABLE:
        terminalreporter.write_line(
            "databases: every database test ran on SQLite and on PostgreSQL (127.0.0.1:5432)"
        )
    else:
        terminalreporter.write_sep("!", PG_SKIP_REASON, red=True, bold=True)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("sqlite")
        url = sqlite_url(directory)
        _migrate(url)
        yield url
        return
    if not PG_AVAILABLE:
        pytest.skip(PG_SKIP_REASON)
    name = create_postgres_database()
    try:
        url = postgres_url(name)
        _migrate(url)
        yield url
    finally:
        drop_postgres_database(name)


def _migrate(url: str) -> None:
    async def run() -> None:
        database = Database(url)
        try:
            await upgrade_to_head(database)
        finally:
            await database.dispose()

    asyncio.run(run())


@pytest.fixture(scope="session")
def stripe_sandbox() -> Iterator[RunningSandbox]:
    """One sandbox server for the run; each environment gets its own sandbox account (key)."""
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def settings(
    database_url: str, stripe_sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=database_url,
        secret="test-secret-" + "x" * 40,
        public_url="http://testserver.local",
        embedded_worker=False,
        embedded_sandbox=False,
        # Sandbox mode and "Test mode" both reach the test run's sandbox: no test reaches Stripe.
        stripe_sandbox_url=stripe_sandbox.base_url,
        stripe_api_base=stripe_sandbox.base_url,
        var_dir=str(tmp_path_factory.mktemp("var")),
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    # The app owns its own engine: the test client serves it from another event loop, and
    # asyncpg connections belong to the loop that opened them.
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


class ApiEnv:
    """A fresh environment and a client that sends its server key."""

    def __init__(self, client: AsyncTestClient[Litestar], created: CreatedEnvironment) -> None:
        self.client = client
        self.created = created
        self.headers = {"X-API-KEY": created.server_key}

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.client.get("/api/v1" + path, headers=self.headers, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return await self.client.post("/api/v1" + path, json=json, headers=self.headers, **kwargs)

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return await self.client.patch("/api/v1" + path, json=json, headers=self.headers, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return await self.client.put("/api/v1" + path, json=json, headers=self.headers, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.client.delete("/api/v1" + path, headers=self.headers, **kwargs)

    async def ok(self, method: str, path: str, json: Any = None, status: int | None = None) -> Any:
        """Call and insist on success; return the decoded body."""
        response = (
            await getattr(self, method)(path, json) if json is not None else await getattr(self, method)(path)
        )
        expected = status or (201 if method == "post" else 200)
        assert response.status_code == expected, (
            f"{method.upper()} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None


_env_counter = 0


@pytest.fixture
async def api(client: AsyncTestClient[Litestar], database: Database) -> ApiEnv:
    global _env_counter
    _env_counter += 1
    import uuid

    async with database.session() as session:
        created = await create_environment(session, f"t{_env_counter}-{uuid.uuid4().hex[:8]}")
    return ApiEnv(client, created)


@pytest.fixture
async def other_api(client: AsyncTestClient[Litestar], database: Database) -> ApiEnv:
    """A second, unrelated environment: for proving keys never cross environments."""
    import uuid

    async with database.session() as session:
        created = await create_environment(session, f"other-{uuid.uuid4().hex[:8]}")
    return ApiEnv(client, created)


def problem_code(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"]
    return body["code"]
