"""Addresses of console pages, for links from outside the console (e.g. Stripe's `tollgateEntityUrl`)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, urlencode

EntityType = Literal["features", "products", "plans", "addons", "coupons", "customers", "subscriptions"]


def entity_url(
    public_url: str, entity_type: EntityType, entity_id: str, environment: str | None = None
) -> str:
    """`{public_url}/admin/{entityType}/{id}?env=<slug>`; a signed-out visitor is sent back here after login."""
    url = f"{public_url.rstrip('/')}/admin/{entity_type}/{quote(entity_id, safe='')}"
    return url + ("?" + urlencode({"env": environment}) if environment else "")
