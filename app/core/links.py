"""Addresses of console pages, for links from outside the console (Stripe's `tollgateEntityUrl`).

In core because both the sync (metadata it writes into Stripe) and the console use them.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

# Entity type -> the console section that shows it: /admin/{section}/{id}.
CONSOLE_SECTIONS = {
    "feature": "features",
    "product": "products",
    "plan": "plans",
    "addon": "addons",
    "coupon": "coupons",
    "customer": "customers",
    "subscription": "subscriptions",
}


def entity_url(public_url: str, entity_type: str, entity_id: str, environment: str | None = None) -> str:
    """`{public_url}/admin/{section}/{id}?env=<slug>`; a signed-out visitor is sent back here after login."""
    url = f"{public_url.rstrip('/')}/admin/{CONSOLE_SECTIONS[entity_type]}/{quote(entity_id, safe='')}"
    return url + ("?" + urlencode({"env": environment}) if environment else "")
