"""Who handles which Stripe event. Handlers register here; the webhook processor dispatches.

A handler receives the stored event (already verified and de-duplicated) and must re-fetch the
object from Stripe rather than trust the payload, and must be safe to run twice and in any
order relative to other events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import StripeIntegration
from app.environments.service import EnvironmentRef
from app.settings import Settings


@dataclass
class EventContext:
    session: AsyncSession
    settings: Settings
    environment: EnvironmentRef
    integration: StripeIntegration
    client: stripe.StripeClient


EventHandler = Callable[[EventContext, dict[str, Any]], Awaitable[None]]


class NotOurs(Exception):
    """Raised by a handler when the event is about a Stripe object that is not one of ours.

    The event is acknowledged and stored IGNORED (unless another handler applied it), so the
    event log tells "applied" from "someone else's object in this Stripe account".
    """


_handlers: dict[str, list[EventHandler]] = {}


def handles(*event_types: str) -> Callable[[EventHandler], EventHandler]:
    def register(handler: EventHandler) -> EventHandler:
        for event_type in event_types:
            _handlers.setdefault(event_type, []).append(handler)
        return handler

    return register


def handlers_for(event_type: str) -> list[EventHandler]:
    return list(_handlers.get(event_type, []))
