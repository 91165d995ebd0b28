"""Controllers for subscriptions, entitlements and usage (filled in by the subscriptions work)."""

from __future__ import annotations

from typing import Any

SUBSCRIPTION_HANDLERS: list[Any] = []
