"""/api/v1: the server-side REST API, authenticated with X-API-KEY."""

from __future__ import annotations

from litestar import Router

api_router = Router(path="/api/v1", route_handlers=[])
