"""Background jobs: an in-process loop for one machine, `tollgate worker` processes for many.

A job is an async function of (database, now) that does a bounded amount of work and says
how much it did. Jobs must be safe to run in several processes at once: they claim their
rows in the database (FOR UPDATE SKIP LOCKED on PostgreSQL), so the worker needs no leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.db import Database
from app.settings import Settings

logger = logging.getLogger("tollgate.worker")

JobFunction = Callable[[Database, dt.datetime], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction
    every_seconds: float


class Worker:
    def __init__(self, database: Database, jobs: list[Job]) -> None:
        self.database = database
        self.jobs = jobs
        self._stopping = asyncio.Event()

    async def run_once(self) -> dict[str, int]:
        """Run every job once, now; returns how much each did. Tests and `worker --once` use it."""
        done: dict[str, int] = {}
        for job in self.jobs:
            done[job.name] = await self._run_job(job)
        return done

    async def _run_job(self, job: Job) -> int:
        try:
            return await job.run(self.database, dt.datetime.now(dt.UTC))
        except Exception:
            # A failing job must not stop the others; it is retried on its next tick.
            logger.exception("job %s failed", job.name)
            return 0

    async def _loop(self, job: Job) -> None:
        while not self._stopping.is_set():
            did = await self._run_job(job)
            if did:
                logger.debug("job %s did %d", job.name, did)
                continue  # more may be waiting: go again without sleeping
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=job.every_seconds)

    async def run_forever(self) -> None:
        await asyncio.gather(*(self._loop(job) for job in self.jobs))

    def stop(self) -> None:
        self._stopping.set()


def default_jobs(settings: Settings) -> list[Job]:
    """Every periodic job the product has; each package contributes its own."""
    from app.billing.checkout import checkout_jobs  # also registers the checkout event handlers
    from app.billing.jobs import billing_jobs
    from app.subscriptions.lifecycle import advance_subscriptions_job

    # Trial ends, renewals, scheduled changes and period-end cancellations; the entitlement
    # engine is right without it, this keeps the stored state (and Stripe) in step.
    return [
        Job("subscription-lifecycle", advance_subscriptions_job, every_seconds=5.0),
        *checkout_jobs(settings),
        *billing_jobs(settings),
    ]
