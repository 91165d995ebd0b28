"""POST /webhooks/stripe/{integrationId}: verify, store, answer 200 at once; a worker processes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, post

from app.billing.webhooks import receive
from app.db import Database
from app.settings import Settings


@post("/{integration_id:str}", status_code=200, include_in_schema=False)
async def stripe_webhook(
    request: Request[Any, Any, Any], database: Database, settings: Settings, integration_id: str
) -> dict[str, bool]:
    # The signature covers the exact bytes Stripe sent: read them raw, before any parsing.
    body = await request.body()
    kept = {k: v for k, v in request.headers.items() if k.lower() in ("stripe-signature", "user-agent")}
    new = await receive(
        database, settings, integration_id, body, request.headers.get("stripe-signature"), kept
    )
    return {"received": True, "duplicate": not new}


webhook_router = Router(path="/webhooks/stripe", route_handlers=[stripe_webhook])
