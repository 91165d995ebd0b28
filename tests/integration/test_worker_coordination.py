"""Worker processes coordinate through the database: one Stripe request budget per Stripe account
for all of them, and one reconcile (and one Stripe events catch-up) at a time.

Each "process" here is its own `Database` (its own connections) in this test process; the
sandbox counts what reaches it per second and how many requests it had to refuse with 429.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.billing import jobs
from app.billing.gateway import stripe_client
from app.billing.models import StripeMode
from app.billing.sync import SyncEngine, bucket_name
from app.core.coordination import SharedRateBudget, release_lease, take_lease
from app.db import Database, utcnow
from app.migrate import upgrade_to_head
from app.settings import Settings
from tests.support.databases import _admin, postgres_url, sqlite_url
from tests.support.sandbox import RunningSandbox, new_test_key

LIMIT = 20.0
BUDGET = LIMIT * 0.75


@pytest.fixture
async def fresh_url(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """An empty migrated database of the run's backend (reconcile must not see other tests' rows)."""
    name = None
    if settings.is_sqlite:
        url = sqlite_url(tmp_path)
    else:
        name = f"tollgate_coord_{uuid.uuid4().hex[:10]}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = postgres_url(name)
    database = Database(url)
    await upgrade_to_head(database)
    await database.dispose()
    yield url
    if name is not None:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _hammer(
    stripe_sandbox: RunningSandbox, settings: Settings, accounts: int, seconds: float = 3.0
) -> tuple[list[list[int]], dict[str, Any]]:
    """Two engines ("processes") each send 8 requests at a time to each of `accounts` Stripe
    accounts for `seconds`; returns the requests made [engine][account] and the sandbox's counts."""
    # Under the sandbox's limit with room to spare: its windows are calendar seconds, the bucket
    # allows a burst of rate/10 on top of the rate, and on a loaded machine a request granted
    # just before a second's end can reach the sandbox just after it.
    own = msgspec.structs.replace(settings, stripe_rate_limit=BUDGET)
    databases = [Database(settings.database_url) for _ in range(2)]
    engines = [SyncEngine(db, own) for db in databases]
    # Accounts of this test's own (fresh buckets), each shared by both engines.
    buckets = [bucket_name(f"acct_{uuid.uuid4().hex[:16]}", StripeMode.TEST) for _ in range(accounts)]
    for engine in engines:
        for bucket in buckets:
            assert isinstance(engine.budget_for(bucket), SharedRateBudget)
    # One sandbox account (API key) per bucket: the sandbox limits each account on its own.
    clients = [stripe_client(new_test_key(), stripe_sandbox.base_url) for _ in buckets]
    made = [[0] * accounts for _ in engines]
    stripe_sandbox.control.rate_limit(LIMIT)
    try:
        deadline = time.monotonic() + seconds

        async def hammer(index: int, account: int) -> None:
            call = engines[index].caller(buckets[account])
            while time.monotonic() < deadline:
                await call("products.list", clients[account].v1.products.list_async)
                # Tasks still queued for a slot at the deadline are served after it: not counted.
                if time.monotonic() <= deadline:
                    made[index][account] += 1

        # Each engine alone would happily make 8 requests at a time per account.
        await asyncio.gather(*(hammer(i, a) for i in (0, 1) for a in range(accounts) for _ in range(8)))
        status = stripe_sandbox.control.status()
    finally:
        stripe_sandbox.control.rate_limit(None)
        for db in databases:
            await db.dispose()
    return made, status


async def test_two_engines_stay_under_one_shared_budget(
    settings: Settings, stripe_sandbox: RunningSandbox
) -> None:
    made, status = await _hammer(stripe_sandbox, settings, accounts=1)
    assert status["rate_limited"] == 0, status
    assert status["peak_requests_per_second"] <= LIMIT
    # Both got a share, and together they used most of the budget (not starved by the row).
    by_engine = [row[0] for row in made]
    assert min(by_engine) >= 5, made
    assert sum(by_engine) >= BUDGET * 3.0 * 0.7, made


async def test_two_stripe_accounts_do_not_share_a_budget(
    settings: Settings, stripe_sandbox: RunningSandbox
) -> None:
    made, status = await _hammer(stripe_sandbox, settings, accounts=2)
    # Each account stays under its own limit, in every second, across both engines ...
    assert status["rate_limited"] == 0, status
    assert status["peak_requests_per_second"] <= LIMIT
    # ... and each used most of its own budget: together far more than one shared budget allows.
    per_account = [made[0][a] + made[1][a] for a in (0, 1)]
    one_budget = BUDGET * 3.0
    assert min(per_account) >= one_budget * 0.7, made
    assert sum(per_account) > one_budget * 1.3, made


async def test_a_lease_has_one_holder_until_it_is_released_or_expires(fresh_url: str) -> None:
    one, two = Database(fresh_url), Database(fresh_url)
    try:
        assert await take_lease(one, "job", "a", 30)
        assert not await take_lease(two, "job", "b", 30)
        assert await take_lease(one, "job", "a", 30)  # the holder extends it
        await release_lease(two, "job", "b")  # not b's to release
        assert not await take_lease(two, "job", "b", 30)
        await release_lease(one, "job", "a")
        assert await take_lease(two, "job", "b", 0.2)
        assert not await take_lease(one, "job", "a", 30)
        await asyncio.sleep(0.3)  # b never came back: its lease expired
        assert await take_lease(one, "job", "a", 30)
    finally:
        await one.dispose()
        await two.dispose()


def _reconcile_job(settings: Settings) -> jobs.Job:
    return next(job for job in jobs.billing_jobs(settings) if job.name == "reconcile")


async def test_one_worker_reconciles_per_round(
    fresh_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tollgate.billing.jobs")
    monkeypatch.setattr(jobs, "RECONCILE_EVERY_SECONDS", 0.5)
    own = msgspec.structs.replace(settings, database_url=fresh_url)
    databases = [Database(fresh_url) for _ in range(3)]
    workers = [_reconcile_job(own) for _ in databases]  # three worker processes
    try:

        def runs() -> int:
            return sum(1 for r in caplog.records if r.getMessage().startswith("reconcile:"))

        await asyncio.sleep(0.55)  # every worker's own timer says "reconcile now"
        await asyncio.gather(*(job.run(db, None) for job, db in zip(workers, databases, strict=True)))  # type: ignore[arg-type]
        assert runs() == 1
        # A run in progress elsewhere (its lease held) keeps everyone else out, whatever the timers say.
        await asyncio.sleep(0.55)
        assert await take_lease(databases[0], jobs.RECONCILE_LEASE, "someone-running", 30)
        for job, db in zip(workers, databases, strict=True):
            await job.run(db, utcnow())
        assert runs() == 1
        await release_lease(databases[0], jobs.RECONCILE_LEASE, "someone-running")
        await asyncio.sleep(0.55)
        await workers[2].run(databases[2], utcnow())
        assert runs() == 2
    finally:
        for db in databases:
            await db.dispose()
