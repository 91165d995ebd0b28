"""Stripe -> Tollgate: verify and store events fast, process them later in a worker.

Receiving does three things only: find the integration, verify the signature over the raw
body, insert the event (unique on (integration, event id), so racing duplicate deliveries
collapse into one row). Processing claims stored events, ignores echoes of our own writes
(their request carried one of our `tg-` idempotency keys) and events about objects that are
not ours, and dispatches the rest to the handlers registered in app.billing.events. Handlers
re-fetch the object from Stripe, so order and duplicates do not matter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import stripe
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.events import EventContext, NotOurs, handlers_for, handles
from app.billing.gateway import api_base_for, stripe_client
from app.billing.models import (
    IntegrationStatus,
    StripeIntegration,
    StripeMode,
    StripeObject,
    WebhookEvent,
    WebhookStatus,
)
from app.core.crypto import SecretBox
from app.core.errors import InvalidRequest, NotFound
from app.db import Database, utcnow
from app.environments.models import Environment
from app.environments.service import EnvironmentRef
from app.settings import Settings
from app.subscriptions.entitlements import rematerialize_customers
from app.subscriptions.models import Subscription, SubscriptionStatus
from app.subscriptions.service import activate_subscription

logger = logging.getLogger("tollgate.webhooks")
S = SubscriptionStatus
ECHO_PREFIX = "tg-"
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Endpoint:
    integration_pk: int
    environment_pk: int
    secret: str


# ref -> (endpoint, cached until): receiving must not hit the database twice per event.
_endpoints: dict[str, tuple[Endpoint, float]] = {}
_ENDPOINT_CACHE_SECONDS = 30.0


async def _endpoint(database: Database, settings: Settings, ref: str) -> Endpoint:
    cached = _endpoints.get(ref)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    async with database.session_maker() as session:
        row = await session.scalar(select(StripeIntegration).where(StripeIntegration.ref == ref))
    if row is None or row.status is not IntegrationStatus.ACTIVE or not row.webhook_secret_encrypted:
        raise NotFound("No Stripe integration with this id.", code="integration_not_found")
    secret = SecretBox(settings.secret).decrypt(
        row.webhook_secret_encrypted, purpose=f"stripe-integration:{row.ref}:webhook_secret"
    )
    endpoint = Endpoint(row.pk, row.environment_pk, secret)
    _endpoints[ref] = (endpoint, now + _ENDPOINT_CACHE_SECONDS)
    return endpoint


async def receive(
    database: Database,
    settings: Settings,
    ref: str,
    body: bytes,
    signature: str | None,
    headers: dict[str, str],
) -> bool:
    """Verify and store one delivery. True if new, False for a duplicate."""
    endpoint = await _endpoint(database, settings, ref)
    if not signature:
        raise InvalidRequest("The Stripe-Signature header is missing.", code="webhook_signature_missing")
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), signature, endpoint.secret, tolerance=300)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise InvalidRequest(
            "The webhook signature does not match this integration's signing secret.",
            code="webhook_signature_invalid",
        ) from None
    try:
        event = msgspec.json.decode(body)
        event_id, event_type = str(event["id"]), str(event["type"])
    except (msgspec.DecodeError, KeyError, TypeError):
        raise InvalidRequest("The webhook body is not a Stripe event.", code="webhook_invalid_body") from None
    obj = (event.get("data") or {}).get("object") or {}
    values = {
        "integration_pk": endpoint.integration_pk,
        "environment_pk": endpoint.environment_pk,
        "event_id": event_id,
        "event_type": event_type,
        "object_id": obj.get("id") if isinstance(obj, dict) else None,
        "payload": body.decode(),
        "headers": headers,
        "status": WebhookStatus.RECEIVED.value,
        "attempts": 0,
        "received_at": utcnow(),
    }
    return await _batcher(database).store(values)


class _Batcher:
    """Group commit for received events: concurrent deliveries share one INSERT and one commit.

    Each delivery still waits for its own row to be committed before it is answered, so a
    2xx always means "stored"; batching only removes a transaction per event (the limit on
    SQLite's single writer, and most of the cost on PostgreSQL).
    """

    MAX_BATCH = 500

    def __init__(self, database: Database) -> None:
        self.database = database
        self.queue: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def store(self, values: dict[str, Any]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.queue.append((values, future))
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="tollgate-webhook-batcher")
        return await future

    async def _run(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[: self.MAX_BATCH], self.queue[self.MAX_BATCH :]
            self.wake.clear()
            try:
                inserted = await self._insert([values for values, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for values, future in batch:
                key = (values["integration_pk"], values["event_id"])
                new = key in inserted
                inserted.discard(key)  # a duplicate inside the same batch is not new
                if not future.done():
                    future.set_result(new)
            if not self.queue:
                # Let deliveries that arrived while we wrote join the next batch.
                await asyncio.sleep(0)

    async def _insert(self, rows: list[dict[str, Any]]) -> set[tuple[int, str]]:
        insert = sqlite_insert if self.database.is_sqlite else pg_insert
        unique: dict[tuple[int, str], dict[str, Any]] = {}
        for row in rows:
            unique.setdefault((row["integration_pk"], row["event_id"]), row)
        statement = (
            insert(WebhookEvent)
            .values(list(unique.values()))
            .on_conflict_do_nothing(index_elements=["integration_pk", "event_id"])
            .returning(WebhookEvent.integration_pk, WebhookEvent.event_id)
        )
        async with self.database.session() as session:
            result = await session.execute(statement)
            return {(int(a), str(b)) for a, b in result.all()}


_batchers: dict[tuple[int, int], _Batcher] = {}


def _batcher(database: Database) -> _Batcher:
    key = (id(database), id(asyncio.get_running_loop()))
    batcher = _batchers.get(key)
    if batcher is None or batcher.database is not database:
        batcher = _batchers[key] = _Batcher(database)
    return batcher


async def store_events(
    session: AsyncSession, database: Database, integration: StripeIntegration, events: list[Any]
) -> int:
    """Store events listed from Stripe (the catch-up job), skipping ones already received."""
    insert = sqlite_insert if database.is_sqlite else pg_insert
    stored = 0
    for event in events:
        data = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        obj = (data.get("data") or {}).get("object") or {}
        result = await session.execute(
            insert(WebhookEvent)
            .values(
                integration_pk=integration.pk,
                environment_pk=integration.environment_pk,
                event_id=data["id"],
                event_type=data["type"],
                object_id=obj.get("id"),
                payload=msgspec.json.encode(data).decode(),
                headers={"source": "catch-up"},
                status=WebhookStatus.RECEIVED.value,
                attempts=0,
                received_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["integration_pk", "event_id"])
        )
        stored += int(bool(getattr(result, "rowcount", 0)))
    return stored


# One client (and so one connection pool) per integration and key, not one per event.
_clients: dict[tuple[int, str, str | None], stripe.StripeClient] = {}


def client_for(settings: Settings, box: SecretBox, integration: StripeIntegration) -> stripe.StripeClient:
    base = api_base_for(settings, integration.mode is StripeMode.SANDBOX)
    key = (integration.pk, integration.api_key_encrypted, base)
    client = _clients.get(key)
    if client is None:
        api_key = box.decrypt(
            integration.api_key_encrypted, purpose=f"stripe-integration:{integration.ref}:api_key"
        )
        client = _clients[key] = stripe_client(api_key, base)
    return client


def is_echo(event: dict[str, Any]) -> bool:
    request = event.get("request") or {}
    key = request.get("idempotency_key") if isinstance(request, dict) else None
    return bool(key and str(key).startswith(ECHO_PREFIX))


# Events that Tollgate's own writes cause and that carry nothing new for Tollgate.
_ECHO_IGNORABLE = {"customer.updated", "customer.subscription.created", "customer.subscription.updated"}


def _load_handlers() -> None:
    """Import the modules that register event handlers beside ours (built in parallel)."""
    import contextlib
    import importlib

    for name in ("app.billing.checkout", "app.billing.portal"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


async def process_pending(
    database: Database,
    settings: Settings,
    now: dt.datetime,
    limit: int = 100,
    *,
    environment_pk: int | None = None,
) -> int:
    async with database.session() as session:
        query = (
            select(WebhookEvent.pk)
            .where(WebhookEvent.status == WebhookStatus.RECEIVED)
            .order_by(WebhookEvent.received_at, WebhookEvent.pk)
            .limit(limit)
        )
        if environment_pk is not None:
            query = query.where(WebhookEvent.environment_pk == environment_pk)
        if not database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        pks = list((await session.scalars(query)).all())
        if not pks:
            return 0
        # Claimed by bumping attempts; another worker skips rows locked until this commit.
        await session.execute(
            update(WebhookEvent).where(WebhookEvent.pk.in_(pks)).values(attempts=WebhookEvent.attempts + 1)
        )
    _load_handlers()
    box = SecretBox(settings.secret)
    for pk in pks:
        await _process_one(database, settings, box, pk)
    return len(pks)


async def _process_one(database: Database, settings: Settings, box: SecretBox, pk: int) -> None:
    async with database.session() as session:
        row = await session.get_one(WebhookEvent, pk)
        if row.status is not WebhookStatus.RECEIVED:
            return
        integration = await session.get_one(StripeIntegration, row.integration_pk)
        slug = await session.scalar(select(Environment.slug).where(Environment.pk == row.environment_pk))
        event = msgspec.json.decode(row.payload)
        handlers = handlers_for(row.event_type)
        if not handlers or (row.event_type in _ECHO_IGNORABLE and is_echo(event)):
            row.status = WebhookStatus.IGNORED
            row.processed_at = utcnow()
            return
        client = client_for(settings, box, integration)
        ctx = EventContext(
            session=session,
            settings=settings,
            environment=EnvironmentRef(pk=row.environment_pk, slug=slug or ""),
            integration=integration,
            client=client,
        )
        applied = 0
        try:
            async with session.begin_nested():
                for handler in handlers:
                    try:
                        await handler(ctx, event)
                        applied += 1
                    except NotOurs:
                        pass
        except Exception as error:
            if isinstance(error, stripe.InvalidRequestError) and error.http_status == 404:
                # The object is gone from Stripe (or was never in this account): nothing to apply.
                row.status = WebhookStatus.IGNORED
                row.processed_at = utcnow()
                row.error = error.user_message
                return
            message = error.user_message if isinstance(error, stripe.StripeError) else str(error)
            logger.warning("webhook %s (%s) failed: %s", row.event_id, row.event_type, message)
            row.error = message or type(error).__name__
            # Left RECEIVED for the next tick until it has failed too often.
            if row.attempts >= MAX_ATTEMPTS:
                row.status = WebhookStatus.FAILED
            return
        # Objects that are not ours are acknowledged and ignored.
        row.status = WebhookStatus.PROCESSED if applied else WebhookStatus.IGNORED
        row.processed_at = utcnow()
        row.error = None
        if event.get("created") and (integration.last_event_created or 0) < int(event["created"]):
            integration.last_event_created = int(event["created"])


# -- handlers ---------------------------------------------------------------------------------
async def ours(ctx: EventContext, entity_type: str, stripe_id: str) -> int | None:
    """Our entity pk for a Stripe object, or None when the object is not ours."""
    pk = await ctx.session.scalar(
        select(StripeObject.entity_pk).where(
            StripeObject.environment_pk == ctx.environment.pk,
            StripeObject.entity_type == entity_type,
            StripeObject.stripe_id == stripe_id,
        )
    )
    if pk is None and entity_type == "subscription":
        # Made by Checkout rather than by the sync: the domain row carries the Stripe id.
        pk = await ctx.session.scalar(
            select(Subscription.pk).where(
                Subscription.environment_pk == ctx.environment.pk, Subscription.billing_id == stripe_id
            )
        )
    return pk


def _subscription_id(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "subscription":
        return obj.get("id")
    sub = obj.get("subscription")
    if sub is None:
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        sub = parent.get("subscription")
    if isinstance(sub, dict):
        return sub.get("id")
    return sub


async def _apply_subscription(ctx: EventContext, stripe_sub_id: str) -> None:
    pk = await ours(ctx, "subscription", stripe_sub_id)
    if pk is None:
        raise NotOurs(stripe_sub_id)
    current = await ctx.client.v1.subscriptions.retrieve_async(stripe_sub_id)
    sub = await ctx.session.get_one(Subscription, pk, with_for_update=True)
    now = utcnow()
    changed = False
    if current.status in ("canceled", "incomplete_expired"):
        if sub.status not in (S.CANCELED, S.EXPIRED):
            sub.status = S.CANCELED
            sub.canceled_at = sub.canceled_at or now
            sub.cancel_at = sub.cancel_at or now
            sub.ended_at = now
            sub.scheduled_change = None
            sub.scheduled_at = None
            changed = True
    elif sub.status not in (S.CANCELED, S.EXPIRED):
        if current.status in ("past_due", "unpaid") and sub.status is not S.PAYMENT_PENDING:
            sub.status = S.PAYMENT_PENDING
            changed = True
        elif current.status == "active" and sub.status is S.PAYMENT_PENDING:
            if sub.activated_at is None:
                # The first payment, seen before checkout.session.completed: the same activation.
                await activate_subscription(ctx.session, sub, now)
            else:
                sub.status = S.ACTIVE
                changed = True
        elif current.status == "trialing" and current.trial_end:
            trial_end = dt.datetime.fromtimestamp(current.trial_end, dt.UTC)
            if sub.trial_end != trial_end:
                sub.trial_end = trial_end
                changed = True
        period_end = _period_end(current)
        if current.cancel_at_period_end and sub.cancel_at is None:
            sub.cancel_at = period_end or sub.current_period_end
            sub.canceled_at = now
            changed = True
        elif not current.cancel_at_period_end and not current.cancel_at and sub.cancel_at is not None:
            sub.cancel_at = None
            sub.canceled_at = None
            changed = True
    if changed:
        from app.core.outbox import record_change

        record_change(ctx.session, sub.environment_pk, "subscription", sub.pk, "updated")
        await rematerialize_customers(ctx.session, [sub.customer_pk], now)


def _period_end(current: Any) -> dt.datetime | None:
    try:
        end = current["items"].data[0].current_period_end
    except (KeyError, IndexError, AttributeError):
        end = getattr(current, "current_period_end", None)
    return dt.datetime.fromtimestamp(end, dt.UTC) if end else None


@handles("customer.subscription.updated", "customer.subscription.deleted", "customer.subscription.created")
async def on_subscription(ctx: EventContext, event: dict[str, Any]) -> None:
    obj = event["data"]["object"]
    await _apply_subscription(ctx, obj["id"])


@handles("invoice.paid", "invoice.payment_failed")
async def on_invoice_payment(ctx: EventContext, event: dict[str, Any]) -> None:
    sub_id = _subscription_id(event["data"]["object"])
    if not sub_id:
        raise NotOurs(event["data"]["object"].get("id"))  # a one-off invoice: never one of ours
    # The subscription's status says whether it is paid up: one source of truth.
    await _apply_subscription(ctx, sub_id)


# Registers the invoice.created handler (usage on renewal invoices).
from app.billing import usage_billing  # noqa: E402, F401
