"""/api/v1/sync-states: where each entity stands with Stripe, a retry action, and reconcile runs
(queued here, run by a worker: poll the run for its report)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.catalog import Limit, StartingAfter
from app.billing.reconcile_runs import ReconcileRunOut, get_run, request_reconcile
from app.billing.status import SyncStateOut, list_sync_states, retry_sync
from app.core.pagination import DEFAULT_LIMIT, Page
from app.environments.service import EnvironmentRef
from app.settings import Settings


class SyncStateController(Controller):
    path = "/sync-states"
    tags = ["sync"]

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        entity_type: Annotated[str | None, Parameter(query="entityType", max_length=32)] = None,
        status: Annotated[str | None, Parameter(query="status", max_length=32)] = None,
    ) -> Page[SyncStateOut]:
        return await list_sync_states(
            db_session,
            settings,
            environment,
            entity_type=entity_type,
            status=status,
            limit=limit,
            starting_after=starting_after,
        )

    @post("/reconcile", status_code=202)
    async def reconcile(self, db_session: AsyncSession, environment: EnvironmentRef) -> ReconcileRunOut:
        """Queue a reconcile of the environment (or answer with the one already queued or running)."""
        run, _ = await request_reconcile(db_session, environment)
        return run

    @get("/reconcile/{run_id:str}")
    async def reconcile_run(
        self, db_session: AsyncSession, environment: EnvironmentRef, run_id: str
    ) -> ReconcileRunOut:
        return await get_run(db_session, environment, run_id)

    @post("/{entity_type:str}/{entity_id:str}/retry", status_code=202)
    async def retry(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        entity_type: str,
        entity_id: str,
    ) -> SyncStateOut:
        return await retry_sync(db_session, settings, environment, entity_type, entity_id)


SYNC_CONTROLLERS = [SyncStateController]
