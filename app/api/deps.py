"""Dependencies shared by the /api/v1 controllers."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from app.db import Database
from app.environments.service import EnvironmentRef, environment_for_server_key


async def provide_environment(request: Request[Any, Any, Any], database: Database) -> EnvironmentRef:
    """The environment whose server key the request carries; 401 problem+json otherwise."""
    return await environment_for_server_key(database.fast, request.headers.get("x-api-key"))


API_DEPENDENCIES = {"environment": Provide(provide_environment)}
