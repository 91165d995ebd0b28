"""The billing jobs the worker runs, and `tollgate sync reconcile`.

- sync-outbox: domain change notices -> PENDING sync states (every second)
- sync: PENDING sync states -> Stripe (every second; retries with backoff)
- webhooks: stored Stripe events -> handlers (every second)
- stripe-catch-up: list Stripe events since the newest processed one, for deliveries that
  never arrived (every 5 minutes)
- reconcile: compare everything with Stripe and repair drift (hourly)
- reconcile-requests: the reconciles of one environment asked for in the console or the API
  (`app.billing.reconcile_runs`; every second)

The first three claim rows and run in every worker process. Catch-up and reconcile read or
touch everything, so one process at a time runs them: the one that takes the database lease
(`app.core.coordination`); the lease then stays taken for the job's interval, so the other
processes skip that round instead of repeating it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field

import stripe
from sqlalchemy import select

from app.billing.integration import WEBHOOK_EVENTS
from app.billing.models import IntegrationStatus, StripeIntegration, SyncState, SyncStatus
from app.billing.sync import SyncEngine, all_entities, mark_pending
from app.billing.webhooks import client_for, process_pending, store_events
from app.core.coordination import leased
from app.core.crypto import SecretBox
from app.db import Database, utcnow
from app.settings import Settings
from app.worker import Job

logger = logging.getLogger("tollgate.billing.jobs")

RECONCILE_EVERY_SECONDS = 3600.0
CATCH_UP_EVERY_SECONDS = 300.0

# One engine (and so one rate budget) per database per process.
_engines: dict[tuple[int, int], SyncEngine] = {}


def engine_for(database: Database, settings: Settings) -> SyncEngine:
    key = (id(database), id(settings))
    engine = _engines.get(key)
    if engine is None or engine.database is not database or engine.settings is not settings:
        engine = SyncEngine(database, settings)
        _engines[key] = engine
    return engine


@dataclass(frozen=True)
class ReconciledEntity:
    """One entity a reconcile had to act on: Stripe was changed, or the sync failed."""

    entity_type: str
    entity_pk: int
    status: SyncStatus
    changed: bool
    error: str | None


@dataclass
class ReconcileProgress:
    """How far a running reconcile is: entities synced so far of `total` (None until counted)."""

    total: int | None = None
    done: int = 0


@dataclass
class ReconcileReport:
    environments: int = 0
    checked: int = 0
    changed: int = 0
    failed: int = 0
    not_synced: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    # Filled by `reconcile_environment` only (reconcile_all counts).
    entities: list[ReconciledEntity] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"environments: {self.environments}",
            f"entities checked: {self.checked}",
            f"changed in Stripe: {self.changed}",
            f"failed: {self.failed}",
            f"not synced: {self.not_synced}",
        ]
        out += [f"  {kind}: {count}" for kind, count in sorted(self.by_type.items())]
        return out


async def drain(engine: SyncEngine, *, now: dt.datetime | None = None, rounds: int = 10_000) -> int:
    """Run outbox ingestion and sync until nothing is due (tests, reconcile, the bench)."""
    total = 0
    for _ in range(rounds):
        at = now or utcnow()
        did = await engine.ingest_outbox(at) + await engine.sync_due(at)
        total += did
        if not did:
            break
    return total


async def reconcile_all(
    database: Database, settings: Settings, *, environment_pk: int | None = None
) -> ReconcileReport:
    """Mark every entity of every connected environment PENDING and sync until quiet.

    Syncing an entity that exists in Stripe reads it and writes only what differs, so this
    is the drift repair: the report counts the entities Stripe had to change.
    """
    engine = engine_for(database, settings)
    report = ReconcileReport()
    async with database.session() as session:
        query = select(StripeIntegration.environment_pk).where(
            StripeIntegration.status == IntegrationStatus.ACTIVE
        )
        if environment_pk is not None:
            query = query.where(StripeIntegration.environment_pk == environment_pk)
        env_pks = list((await session.scalars(query)).all())
        targets = set()
        for env_pk in env_pks:
            targets |= await all_entities(session, env_pk)
        await mark_pending(session, targets, utcnow())
    report.environments = len(env_pks)
    report.checked = len(targets)
    before_changed, before_failed = engine.stats.changed, engine.stats.failed
    await drain(engine)
    report.changed = engine.stats.changed - before_changed
    report.failed = engine.stats.failed - before_failed
    await _count_states(database, env_pks, report)
    logger.info("reconcile: %s", "; ".join(report.lines()))
    return report


# Catalog and customers before the subscriptions that need them (as the engine's own phases).
_PHASES = (("plan", "addon", "coupon", "customer"), ("subscription",))


async def reconcile_environment(
    database: Database, settings: Settings, environment_pk: int, progress: ReconcileProgress | None = None
) -> ReconcileReport:
    """Reconcile one environment now and say entity by entity what it changed (the console's button).

    Unlike `reconcile_all` it syncs only this environment's entities (the worker keeps the rest)
    and keeps each entity's outcome; a transient error leaves the entity PENDING for the worker.
    """
    engine = engine_for(database, settings)
    report = ReconcileReport()
    async with database.session() as session:
        connected = await session.scalar(
            select(StripeIntegration.pk).where(
                StripeIntegration.environment_pk == environment_pk,
                StripeIntegration.status == IntegrationStatus.ACTIVE,
            )
        )
        targets = await all_entities(session, environment_pk) if connected else set()
        await mark_pending(session, targets, utcnow())
    report.environments = int(connected is not None)
    report.checked = len(targets)
    progress = progress or ReconcileProgress()
    progress.total = len(targets)
    limit = asyncio.Semaphore(engine.concurrency)

    async def one(entity_type: str, entity_pk: int) -> None:
        async with limit:
            outcome = await engine.sync_entity(environment_pk, entity_type, entity_pk)
        progress.done += 1
        if outcome.changed or outcome.status in (SyncStatus.FAILED, SyncStatus.PENDING):
            report.entities.append(
                ReconciledEntity(entity_type, entity_pk, outcome.status, outcome.changed, outcome.error)
            )

    for kinds in _PHASES:
        await asyncio.gather(*(one(kind, pk) for _, kind, pk in sorted(targets) if kind in kinds))
    report.entities.sort(key=lambda e: (e.entity_type, e.entity_pk))
    report.changed = sum(e.changed for e in report.entities)
    report.failed = sum(e.status is SyncStatus.FAILED for e in report.entities)
    await _count_states(database, [environment_pk], report)
    logger.info("reconcile of environment %s: %s", environment_pk, "; ".join(report.lines()))
    return report


async def _count_states(database: Database, env_pks: list[int], report: ReconcileReport) -> None:
    """Where the environments' entities stand now, by type and status."""
    async with database.session() as session:
        for entity_type, status in (
            await session.execute(
                select(SyncState.entity_type, SyncState.status).where(SyncState.environment_pk.in_(env_pks))
            )
        ).all():
            if status is SyncStatus.NOT_SYNCED:
                report.not_synced += 1
            report.by_type[f"{entity_type} {status.value}"] = (
                report.by_type.get(f"{entity_type} {status.value}", 0) + 1
            )


async def catch_up(database: Database, settings: Settings) -> int:
    """Store Stripe events newer than the newest processed one that never arrived as webhooks."""
    box = SecretBox(settings.secret)
    stored = 0
    async with database.session() as session:
        integrations = list(
            (
                await session.scalars(
                    select(StripeIntegration).where(StripeIntegration.status == IntegrationStatus.ACTIVE)
                )
            ).all()
        )
    for integration in integrations:
        client = client_for(settings, box, integration)
        since = integration.last_event_created or int(integration.created_at.timestamp())
        params: dict[str, object] = {"created": {"gte": since}, "limit": 100, "types": WEBHOOK_EVENTS}
        try:
            page = await client.v1.events.list_async(params=params)  # type: ignore[arg-type]
            events = list(page.data)
            while page.has_more and len(events) < 1000:
                params["starting_after"] = events[-1].id
                page = await client.v1.events.list_async(params=params)  # type: ignore[arg-type]
                events += list(page.data)
        except stripe.StripeError as error:
            logger.warning("catch-up for %s: %s", integration.ref, error.user_message or error)
            continue
        async with database.session() as session:
            stored += await store_events(session, database, integration, events)
    return stored


RECONCILE_LEASE = "billing:reconcile"
CATCH_UP_LEASE = "billing:stripe-catch-up"
# Longer than any run is expected to take; the holder gives the lease back when done.
LEASE_SECONDS = 1800.0


def billing_jobs(settings: Settings) -> list[Job]:
    state = {"reconciled": time.monotonic(), "caught_up": time.monotonic()}
    holder = f"worker-{uuid.uuid4().hex[:16]}"  # this process, in the lease rows

    async def outbox(database: Database, now: dt.datetime) -> int:
        return await engine_for(database, settings).ingest_outbox(now)

    async def sync(database: Database, now: dt.datetime) -> int:
        return await engine_for(database, settings).sync_due(now)

    async def webhooks(database: Database, now: dt.datetime) -> int:
        return await process_pending(database, settings, now)

    async def stripe_catch_up(database: Database, now: dt.datetime) -> int:
        # The loop runs every job at start; only catch up once the interval has passed.
        if time.monotonic() - state["caught_up"] < CATCH_UP_EVERY_SECONDS:
            return 0
        state["caught_up"] = time.monotonic()
        async with leased(
            database, CATCH_UP_LEASE, holder, LEASE_SECONDS, rest_seconds=CATCH_UP_EVERY_SECONDS * 0.9
        ) as mine:
            if mine:
                await catch_up(database, settings)
        return 0

    async def reconcile_requests(database: Database, now: dt.datetime) -> int:
        from app.billing.reconcile_runs import run_requested  # it builds on this module

        return await run_requested(database, settings, holder)

    async def reconcile(database: Database, now: dt.datetime) -> int:
        if time.monotonic() - state["reconciled"] < RECONCILE_EVERY_SECONDS:
            return 0
        state["reconciled"] = time.monotonic()
        async with leased(
            database, RECONCILE_LEASE, holder, LEASE_SECONDS, rest_seconds=RECONCILE_EVERY_SECONDS * 0.9
        ) as mine:
            if mine:
                await reconcile_all(database, settings)
        return 0

    return [
        Job("sync-outbox", outbox, 1.0),
        Job("sync", sync, 1.0),
        Job("webhooks", webhooks, 1.0),
        Job("stripe-catch-up", stripe_catch_up, 60.0),
        Job("reconcile", reconcile, 300.0),
        Job("reconcile-requests", reconcile_requests, 1.0),
    ]
