"""create_app(): plugins, routers, exception handlers. The CLI lives in app.cli."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Router, get
from litestar.config.app import AppConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.template.config import TemplateConfig

from app.core.problems import EXCEPTION_HANDLERS
from app.db import Database, provide_db_session
from app.settings import PROJECT_ROOT, Settings, load_settings
from app.static_assets import static_router as create_static_router
from app.worker import Worker, default_jobs

logger = logging.getLogger("tollgate")


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _extra_route_handlers(settings: Settings) -> list[Any]:
    """Routers of the packages built beside the core (API, webhooks, widgets, admin, sandbox)."""
    from app.admin.routes import admin_router
    from app.api.billing import billing_public_router
    from app.api.routes import api_router
    from app.billing.routes import webhook_router
    from app.demo.routes import demo_router
    from app.widgets.routes import widget_router

    handlers: list[Any] = [
        api_router,
        billing_public_router,
        webhook_router,
        widget_router,
        admin_router,
        demo_router,
    ]
    if settings.embedded_sandbox:
        from app.sandbox.mount import sandbox_mount

        handlers.append(sandbox_mount(settings))
    return handlers


def _compile_widget_templates(app: Litestar) -> None:
    """Compile the widgets' templates at startup: the first paywall a customer sees would
    otherwise pay ~50 ms of Jinja compiling (Jinja keeps compiled templates in memory)."""
    engine = app.template_engine
    if isinstance(engine, JinjaTemplateEngine):
        for name in engine.engine.list_templates(filter_func=lambda n: n.startswith("widgets/")):
            engine.engine.get_template(name)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Litestar:
    settings = settings or load_settings()
    database = database or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        worker_task: asyncio.Task[None] | None = None
        worker = Worker(database, default_jobs(settings))
        _compile_widget_templates(app)
        if settings.embedded_worker:
            worker_task = asyncio.create_task(worker.run_forever(), name="tollgate-worker")
        try:
            yield
        finally:
            worker.stop()
            if worker_task is not None:
                await worker_task
            await database.dispose()

    def provide_database() -> Database:
        return database

    def provide_settings() -> Settings:
        return settings

    static_router = create_static_router()
    config = AppConfig(
        route_handlers=[healthz, static_router, *_extra_route_handlers(settings)],
        dependencies={
            "database": Provide(provide_database, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "db_session": Provide(provide_db_session),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="Tollgate API", version="1.0.0", path="/schema"),
        template_config=TemplateConfig(directory=PROJECT_ROOT / "templates", engine=JinjaTemplateEngine),
        request_max_body_size=settings.max_body_bytes,
        state=State({"settings": settings, "database": database}),
        debug=False,
    )
    return Litestar.from_config(config)


__all__ = ["Router", "create_app"]
