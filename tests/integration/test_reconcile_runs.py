"""Reconcile runs: asked for in the console ("Reconcile now") or the API, queued, run by the
worker's `reconcile-requests` job (drained here explicitly, as the real worker would run it),
one at a time per environment; "Check again" for entities that will not be synced; and each
Stripe account's requests going through its own rate bucket."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from app.billing import jobs, reconcile_runs
from app.billing.models import ReconcileRun, ReconcileStatus, StripeIntegration, SyncState, SyncStatus
from app.billing.sync import bucket_name
from app.core.coordination import RateBucket, take_lease
from app.db import Database, utcnow
from app.settings import Settings
from tests.conftest import ApiEnv, problem_code
from tests.integration import test_admin_screens as screens
from tests.integration import test_sync_rules as rules
from tests.integration.test_admin_screens import Console
from tests.integration.test_admin_sync import paid_plan, stripe_cell, ten_percent
from tests.integration.test_sync_rules import Synced
from tests.support.sandbox import RunningSandbox

cheap_password_hashing = screens.cheap_password_hashing
console = screens.console
synced = rules.synced


async def work(database: Database, settings: Settings) -> int:
    """One round of the worker's own reconcile-requests job (each call: a worker process of its own)."""
    job = next(job for job in jobs.billing_jobs(settings) if job.name == "reconcile-requests")
    return await job.run(database, utcnow())


async def runs_of(database: Database, env_pk: int | None) -> list[ReconcileRun]:
    async with database.session() as session:
        return list(
            (
                await session.scalars(
                    select(ReconcileRun)
                    .where(ReconcileRun.environment_pk == env_pk)
                    .order_by(ReconcileRun.pk)
                )
            ).all()
        )


async def drifted_plan(synced: Synced) -> str:
    """A synced plan and coupon; the plan's product renamed in Stripe's dashboard (drift)."""
    await paid_plan(synced.api)
    await ten_percent(synced.api)
    await synced.drain()
    product_id = (await synced.states("plan"))["plan:pro"]["billingId"]
    synced.stripe.v1.products.update(product_id, params={"name": "Renamed in the dashboard"})
    return product_id


def reconcile_block(page_html: str) -> str:
    match = re.search(r'<section class="card" id="reconcile-run".*?</section>', page_html, re.S)
    assert match, page_html
    return match.group(0)


async def test_api_queues_one_run_the_worker_reports_and_keys_stay_in_their_environment(
    synced: Synced, other_api: ApiEnv, database: Database, settings: Settings
) -> None:
    api = synced.api
    product_id = await drifted_plan(synced)
    queued = await api.ok("post", "/sync-states/reconcile", status=202)
    assert queued["status"] == "QUEUED" and queued["id"].startswith("rec_")
    assert queued["report"] is None and queued["startedAt"] is None and queued["requestedAt"]
    # Nothing ran in the request: Stripe still has the drift.
    assert synced.stripe.v1.products.retrieve(product_id).name == "Renamed in the dashboard"
    # Asking again while it waits answers with the same run, not a second one.
    again = await api.ok("post", "/sync-states/reconcile", status=202)
    assert again["id"] == queued["id"]
    assert len(await runs_of(database, synced.env_pk)) == 1
    assert (await api.ok("get", f"/sync-states/reconcile/{queued['id']}"))["status"] == "QUEUED"
    # Another environment's key does not see it, and cannot reconcile without Stripe.
    theirs = await other_api.get(f"/sync-states/reconcile/{queued['id']}")
    assert theirs.status_code == 404 and problem_code(theirs) == "reconcile_run_not_found"
    refused = await other_api.post("/sync-states/reconcile")
    assert refused.status_code == 409 and problem_code(refused) == "stripe_not_connected"
    unknown = await api.get("/sync-states/reconcile/rec_nope")
    assert unknown.status_code == 404 and problem_code(unknown) == "reconcile_run_not_found"

    assert await work(database, settings) == 1
    assert await work(database, settings) == 0  # nothing left to run
    done = await api.ok("get", f"/sync-states/reconcile/{queued['id']}")
    assert done["status"] == "FINISHED" and done["startedAt"] and done["finishedAt"]
    assert done["done"] == done["total"] == 2
    report = done["report"]
    assert (report["checked"], report["changed"], report["failed"], report["pending"]) == (2, 1, 0, 0)
    assert report["entities"] == [
        {"entityType": "plan", "entityId": "pro", "status": "SYNCED", "changed": True, "errorMessage": None}
    ]
    assert report["byStatus"] == {"coupon SYNCED": 1, "plan SYNCED": 1}
    assert synced.stripe.v1.products.retrieve(product_id).name == "Acme Pro Plan"
    # Once finished, asking again queues a new run.
    second = await api.ok("post", "/sync-states/reconcile", status=202)
    assert second["id"] != queued["id"] and second["status"] == "QUEUED"
    assert await work(database, settings) == 1
    settled = await api.ok("get", f"/sync-states/reconcile/{second['id']}")
    assert settled["report"]["changed"] == 0 and settled["report"]["entities"] == []


async def test_console_button_queues_the_page_follows_the_run_and_shows_the_report(
    console: Console, synced: Synced, database: Database, settings: Settings
) -> None:
    await drifted_plan(synced)
    page = await console.get("/admin/sync")
    assert "Reconcile now" in page.text and 'id="reconcile-run"' not in page.text
    clicked = await console.post("/admin/sync/reconcile", {})
    assert clicked.status_code == 303 and clicked.headers["location"] == f"/admin/sync?env={console.env}"
    waiting = await console.get("/admin/sync")
    assert "Reconcile queued: its report appears here when it is done." in waiting.text
    block = reconcile_block(waiting.text)
    assert 'data-reconcile-status="QUEUED"' in block and "Reconcile queued…" in block
    (run,) = await runs_of(database, synced.env_pk)
    poll = f'hx-get="/admin/sync/reconcile/{run.ref}?env={console.env}" hx-trigger="every 2s"'
    assert poll in block
    # A second click while it waits queues nothing more.
    twice = await console.post("/admin/sync/reconcile", {})
    assert twice.status_code == 303
    assert "already under way" in (await console.get("/admin/sync")).text
    assert [r.ref for r in await runs_of(database, synced.env_pk)] == [run.ref]

    assert await work(database, settings) == 1
    # The polled block now carries the report, and stops polling.
    polled = await console.get(f"/admin/sync/reconcile/{run.ref}", headers={"HX-Request": "true"})
    assert polled.status_code == 200 and polled.text.lstrip().startswith(
        '<section class="card" id="reconcile-run"'
    )
    report = reconcile_block(polled.text)
    assert 'data-reconcile-status="FINISHED"' in report and "hx-trigger" not in report
    assert "Checked 2 entities: Stripe had to change 1, 0 failed." in report
    assert f'href="/admin/plans/pro?env={console.env}"' in report and "changed in Stripe" in report
    assert "c10" not in report
    # The page shows the latest run's report too.
    assert "Stripe had to change 1, 0 failed." in reconcile_block((await console.get("/admin/sync")).text)
    async with database.session() as session:
        open_states = await session.scalar(
            select(func.count())
            .select_from(SyncState)
            .where(SyncState.environment_pk == synced.env_pk, SyncState.status != SyncStatus.SYNCED)
        )
    assert open_states == 0


async def test_a_running_run_shows_its_progress(
    console: Console,
    synced: Synced,
    database: Database,
    settings: Settings,
    stripe_sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile_runs, "PROGRESS_EVERY_SECONDS", 0.5)
    for i in range(3):
        await paid_plan(synced.api, f"p{i}", 1000 + i)
    await synced.drain()
    run = await synced.api.ok("post", "/sync-states/reconcile", status=202)
    # Stripe answers each product read slowly: the run takes a while.
    stripe_sandbox.control.add_fault(method="GET", path="/v1/products/*", status=200, delay_ms=400)
    try:
        worker = asyncio.create_task(work(database, settings))
        seen: dict[str, Any] = {}
        for _ in range(100):
            seen = await synced.api.ok("get", f"/sync-states/reconcile/{run['id']}")
            if seen["status"] == "RUNNING" and seen["total"] is not None:
                break
            await asyncio.sleep(0.1)
        assert seen["status"] == "RUNNING" and seen["total"] == 3 and seen["startedAt"], seen
        block = reconcile_block(
            (await console.get(f"/admin/sync/reconcile/{run['id']}", headers={"HX-Request": "true"})).text
        )
        assert "Reconcile running…" in block and 'hx-trigger="every 2s"' in block
        assert re.search(r"[0-3] of 3 entities checked", block), block
        assert await worker == 1
    finally:
        stripe_sandbox.control.clear_faults()
    done = await synced.api.ok("get", f"/sync-states/reconcile/{run['id']}")
    assert done["status"] == "FINISHED" and done["done"] == 3 and done["report"]["checked"] == 3


async def test_one_worker_runs_a_request_and_a_dead_workers_run_is_taken_over(
    synced: Synced, settings: Settings, database: Database
) -> None:
    await paid_plan(synced.api)
    await synced.drain()
    run = await synced.api.ok("post", "/sync-states/reconcile", status=202)
    # Three worker processes (their own connections) see the request at once: one runs it.
    databases = [Database(settings.database_url) for _ in range(3)]
    try:
        did = await asyncio.gather(*(work(db, settings) for db in databases))
    finally:
        for db in databases:
            await db.dispose()
    assert sorted(did) == [0, 0, 1]
    assert (await synced.api.ok("get", f"/sync-states/reconcile/{run['id']}"))["status"] == "FINISHED"

    # A worker took the next one and died mid-run: RUNNING, its lease held until it expires.
    run = await synced.api.ok("post", "/sync-states/reconcile", status=202)
    async with database.session() as session:
        row = await session.scalar(select(ReconcileRun).where(ReconcileRun.ref == run["id"]))
        assert row is not None
        row.status, row.started_at = ReconcileStatus.RUNNING, utcnow()
    assert synced.env_pk is not None
    assert await take_lease(database, reconcile_runs._lease(synced.env_pk), "dead-worker", 0.5)
    assert await work(database, settings) == 0
    assert (await synced.api.ok("get", f"/sync-states/reconcile/{run['id']}"))["status"] == "RUNNING"
    # Still under way: asking again answers with it.
    assert (await synced.api.ok("post", "/sync-states/reconcile", status=202))["id"] == run["id"]
    await asyncio.sleep(0.6)
    assert await work(database, settings) == 1
    assert (await synced.api.ok("get", f"/sync-states/reconcile/{run['id']}"))["status"] == "FINISHED"


async def test_check_again_for_entities_that_will_not_be_synced(console: Console, synced: Synced) -> None:
    api = synced.api
    await api.ok("post", "/customers", {"id": "lonely", "name": "Lonely"})
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post",
        "/plans",
        {
            "id": "draft",
            "productId": "acme",
            "name": "Draft",
            "pricingType": "PAID",
            "charges": [rules.charge(900)],
        },
    )
    await synced.drain()
    states = await synced.states()
    assert states["customer:lonely"]["reason"] == "no_subscription" and states["customer:lonely"]["canRetry"]
    # A draft reaches Stripe when it is published: nothing to check again.
    assert states["plan:draft"]["reason"] == "draft" and not states["plan:draft"]["canRetry"]
    assert "Check again" not in stripe_cell((await console.get("/admin/plans/draft")).text)
    cell = stripe_cell((await console.get("/admin/customers/lonely")).text)
    assert "Will not be synced" in cell and ">Check again</button>" in cell
    assert f'action="/admin/sync/customer/lonely/retry?env={console.env}"' in cell
    sync_page = await console.get("/admin/sync?status=NOT_SYNCED")
    assert ">Check again</button>" in sync_page.text

    # The operator checks again: queued (the stored state, not only a change in the outbox) ...
    checked = await console.post("/admin/sync/customer/lonely/retry", {})
    assert (
        checked.status_code == 303
        and checked.headers["location"] == f"/admin/customers/lonely?env={console.env}"
    )
    after = await console.get("/admin/customers/lonely")
    assert "Customer lonely is queued to be checked again." in after.text
    assert 'data-sync-status="PENDING"' in stripe_cell(after.text)
    assert (await synced.states("customer"))["customer:lonely"]["status"] == "PENDING"
    # ... and the worker looks again: still nothing for Stripe to bill.
    await synced.drain()
    again = (await synced.states("customer"))["customer:lonely"]
    assert (again["status"], again["reason"]) == ("NOT_SYNCED", "no_subscription")
    assert ">Check again</button>" in stripe_cell((await console.get("/admin/customers/lonely")).text)


async def test_each_stripe_account_has_its_own_rate_bucket(
    synced: Synced, other_api: ApiEnv, database: Database, settings: Settings, stripe_sandbox: RunningSandbox
) -> None:
    other = Synced(other_api, database, settings, stripe_sandbox)
    await other.connect()
    assert other.account_id != synced.account_id
    for env in (synced, other):
        await ten_percent(env.api)
        await env.drain()
        assert (await env.states("coupon"))["coupon:c10"]["status"] == "SYNCED"
    async with database.session() as session:
        names = set((await session.scalars(select(RateBucket.name))).all())
        modes = {
            row.account_id: row.mode
            for row in (
                await session.scalars(
                    select(StripeIntegration).where(
                        StripeIntegration.environment_pk.in_([synced.env_pk, other.env_pk])
                    )
                )
            ).all()
        }
    for account, mode in modes.items():
        assert bucket_name(account, mode) in names
    assert bucket_name(synced.account_id, modes[synced.account_id]) == f"stripe:{synced.account_id}:sandbox"
