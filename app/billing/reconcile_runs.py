"""Reconciles of one environment asked for in the console ("Reconcile now") or the API, run by a worker.

A large environment takes minutes at the Stripe request budget, far longer than a web request
may, so asking only records a QUEUED `reconcile_runs` row and answers. A worker's
`reconcile-requests` job (`run_requested`) takes the environment's lease, marks the run RUNNING,
runs `reconcile_environment`, writes its progress every couple of seconds (and renews the lease),
and finally keeps the report (FINISHED) or the error (FAILED). A worker killed mid-run stops
renewing: once the lease expires another worker runs it again from the start (a reconcile
only writes what differs, so repeating it is harmless).

At most one run per environment is QUEUED or RUNNING (a partial unique index): asking again
meanwhile answers with that run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.jobs import ReconcileProgress
from app.billing.models import ReconcileRun, ReconcileStatus
from app.billing.status import ReconcileOut, reconcile, stripe_connected
from app.core.coordination import release_lease, take_lease
from app.core.errors import Conflict, not_found
from app.core.schemas import OutStruct
from app.db import Database, utcnow
from app.environments.models import Environment
from app.environments.service import EnvironmentRef
from app.settings import Settings

logger = logging.getLogger("tollgate.billing.reconcile_runs")

ACTIVE = (ReconcileStatus.QUEUED, ReconcileStatus.RUNNING)
# The holder renews its lease every 10 s; a run whose worker died is taken over this long after.
RUN_LEASE_SECONDS = 60.0
PROGRESS_EVERY_SECONDS = 2.0


class ReconcileRunOut(OutStruct):
    id: str
    status: ReconcileStatus
    requested_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    # While RUNNING: entities checked so far of `total` (None until counted).
    done: int
    total: int | None
    # Once FINISHED: what Stripe had to change, what failed, what is left pending.
    report: ReconcileOut | None
    # Once FAILED: why the run itself broke.
    error_message: str | None


def _out(row: ReconcileRun) -> ReconcileRunOut:
    return ReconcileRunOut(
        id=row.ref,
        status=row.status,
        requested_at=row.requested_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        done=row.done,
        total=row.total,
        report=msgspec.convert(row.report, ReconcileOut) if row.report is not None else None,
        error_message=row.error_message,
    )


def _lease(environment_pk: int) -> str:
    return f"billing:reconcile-run:{environment_pk}"


async def _active(session: AsyncSession, environment_pk: int) -> ReconcileRun | None:
    return await session.scalar(
        select(ReconcileRun).where(
            ReconcileRun.environment_pk == environment_pk, ReconcileRun.status.in_(ACTIVE)
        )
    )


async def request_reconcile(session: AsyncSession, env: EnvironmentRef) -> tuple[ReconcileRunOut, bool]:
    """Queue a reconcile of the environment; with one queued or running already, that one.

    Returns the run and whether it is a new one.
    """
    if not await stripe_connected(session, env):
        raise Conflict(
            "This environment is not connected to Stripe: there is nothing to reconcile.",
            code="stripe_not_connected",
        )
    active = await _active(session, env.pk)
    if active is not None:
        return _out(active), False
    row = ReconcileRun(
        environment_pk=env.pk,
        ref="rec_" + secrets.token_hex(10),
        status=ReconcileStatus.QUEUED,
        requested_at=utcnow(),
        done=0,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Asked twice at the same moment (the unique index on active runs): the other one stands.
        active = await _active(session, env.pk)
        if active is None:
            raise
        return _out(active), False
    return _out(row), True


async def get_run(session: AsyncSession, env: EnvironmentRef, ref: str) -> ReconcileRunOut:
    row = await session.scalar(
        select(ReconcileRun).where(ReconcileRun.environment_pk == env.pk, ReconcileRun.ref == ref)
    )
    if row is None:
        raise not_found("reconcile_run", ref)
    return _out(row)


async def latest_run(session: AsyncSession, env: EnvironmentRef) -> ReconcileRunOut | None:
    row = await session.scalar(
        select(ReconcileRun)
        .where(ReconcileRun.environment_pk == env.pk)
        .order_by(ReconcileRun.pk.desc())
        .limit(1)
    )
    return _out(row) if row is not None else None


async def run_requested(database: Database, settings: Settings, holder: str) -> int:
    """The worker's job: run one requested reconcile that no live worker is running (1 if it did)."""
    async with database.session(read=True) as session:
        waiting = (
            await session.execute(
                select(ReconcileRun.pk, ReconcileRun.environment_pk)
                .where(ReconcileRun.status.in_(ACTIVE))
                .order_by(ReconcileRun.pk)
                .limit(20)
            )
        ).all()
    for run_pk, environment_pk in waiting:
        # RUNNING with its lease still held: a live worker has it. Expired: its worker died.
        if not await take_lease(database, _lease(environment_pk), holder, RUN_LEASE_SECONDS):
            continue
        try:
            if await _run(database, settings, run_pk, holder):
                return 1
        finally:
            await release_lease(database, _lease(environment_pk), holder)
    return 0


async def _run(database: Database, settings: Settings, run_pk: int, holder: str) -> bool:
    async with database.session() as session:
        row = await session.get(ReconcileRun, run_pk)
        # Finished by the worker that held the lease a moment ago.
        if row is None or row.status not in ACTIVE:
            return False
        if row.status is ReconcileStatus.RUNNING:
            logger.warning("reconcile run %s: its worker stopped; running it again", row.ref)
        row.status = ReconcileStatus.RUNNING
        row.started_at = utcnow()
        row.done, row.total = 0, None
        slug = await session.scalar(select(Environment.slug).where(Environment.pk == row.environment_pk))
        env = EnvironmentRef(pk=row.environment_pk, slug=slug or "")
        ref = row.ref
    progress = ReconcileProgress()
    task = asyncio.create_task(reconcile(database, settings, env, progress), name=f"reconcile-{ref}")
    noted = renewed = time.monotonic()
    counted = False
    try:
        while True:
            finished, _ = await asyncio.wait({task}, timeout=0.25)
            if finished:
                break
            # A note every couple of seconds, and one as soon as the entities are counted (the
            # page can say "0 of 5,000" at once); the lease renewed well before it expires.
            now = time.monotonic()
            if now - renewed > RUN_LEASE_SECONDS / 6:
                renewed = now
                if not await take_lease(database, _lease(env.pk), holder, RUN_LEASE_SECONDS):
                    # Stalled past the lease: another worker took the run over; leave it to that one.
                    logger.warning("reconcile run %s: lease lost, stopping", ref)
                    task.cancel()
                    return False
            first_count = progress.total is not None and not counted
            if first_count or now - noted >= PROGRESS_EVERY_SECONDS:
                noted, counted = now, progress.total is not None
                await _note(database, run_pk, status=None, done=progress.done, total=progress.total)
        report = task.result()
    except asyncio.CancelledError:
        task.cancel()
        raise
    except Exception as error:
        logger.exception("reconcile run %s failed", ref)
        await _note(database, run_pk, status=ReconcileStatus.FAILED, error=str(error) or type(error).__name__)
        return True
    await _note(
        database,
        run_pk,
        status=ReconcileStatus.FINISHED,
        done=progress.done,
        total=progress.total,
        report=msgspec.to_builtins(report),
    )
    return True


async def _note(
    database: Database,
    run_pk: int,
    *,
    status: ReconcileStatus | None,
    done: int | None = None,
    total: int | None = None,
    report: dict[str, object] | None = None,
    error: str | None = None,
) -> None:
    """Progress while running (status None), or the run's end."""
    async with database.session() as session:
        row = await session.get(ReconcileRun, run_pk)
        if row is None:
            return  # the environment was deleted meanwhile
        if done is not None:
            row.done, row.total = done, total
        if status is not None:
            row.status = status
            row.finished_at = utcnow()
            row.report = report
            row.error_message = error
