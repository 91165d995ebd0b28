"""The sync engine: outbox rows -> sync states -> Stripe, with retries and a request budget per account.

Two steps, both safe in any number of processes:

1. `ingest_outbox` turns domain change notices into "this entity must be (re)synced" by
   bumping its `SyncState.desired_version` (PENDING). Related entities are fanned out here
   (a product rename touches its plans; a connect touches everything).
2. `sync_due` claims due PENDING states (FOR UPDATE SKIP LOCKED on PostgreSQL, the single
   SQLite writer otherwise), and for each: reads our rows (short transaction), computes the
   desired Stripe state (mapping.py), reads what Stripe has, writes the difference (no
   transaction open while Stripe answers), then records the outcome in a second short
   transaction. If the entity changed meanwhile it stays PENDING for another pass.

Every Stripe write carries a deterministic idempotency key (`tg-<env>-<type>-<pk>-<action>-
<hash of the exact parameters>`, plus the desired version for updates), products and coupons
get deterministic ids, and a create retried after a crash first looks for an object carrying
our metadata, so a worker killed between Stripe's answer and our commit never duplicates.
Dependencies are synced inline first: a subscription makes sure its customer, its prices and
its coupon exist in Stripe before it is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import stripe
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import mapping as m
from app.billing.gateway import api_base_for, stripe_client
from app.billing.models import (
    CheckoutSession,
    CheckoutStatus,
    IntegrationStatus,
    StripeIntegration,
    StripeMode,
    StripeObject,
    SyncState,
    SyncStatus,
)
from app.catalog.models import (
    Addon,
    BillingModel,
    CatalogStatus,
    Charge,
    Coupon,
    Feature,
    Plan,
    PriceVersion,
    Product,
)
from app.core.coordination import SharedRateBudget
from app.core.crypto import SecretBox
from app.core.outbox import OutboxEvent
from app.customers.models import Customer
from app.db import Database, utcnow
from app.environments.models import Environment
from app.settings import Settings
from app.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionStatus

logger = logging.getLogger("tollgate.sync")

S = SubscriptionStatus
SYNCED_TYPES = ("plan", "addon", "coupon", "customer", "subscription")
SANDBOX_GRACE_PERIOD_SECONDS = 3600
MAX_BACKOFF_SECONDS = 600.0
# Catalog before customers before subscriptions inside one claimed batch.
_ORDER = case(
    {"plan": 0, "addon": 0, "coupon": 0, "customer": 1, "subscription": 2},
    value=SyncState.entity_type,
    else_=3,
)


class Transient(Exception):
    """Retry later (429, 5xx, timeouts, connection errors, database locks)."""


class RateBudget:
    """An in-process token bucket: for one process alone (tests, tools).

    Workers use `app.core.coordination.SharedRateBudget` instead (the engine's default): one
    `TOLLGATE_STRIPE_RATE_LIMIT` per Stripe account for every worker process together.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = max(rate, 0.1)
        self.capacity = burst if burst is not None else max(1.0, self.rate / 10)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class Stats:
    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    synced: int = 0
    changed: int = 0
    failed: int = 0

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, (stripe.RateLimitError, stripe.APIConnectionError, TimeoutError, Transient)):
        return True
    if isinstance(error, stripe.StripeError):
        status = error.http_status or 0
        # 409: the same idempotency key is in flight in another request; try again shortly.
        return status >= 500 or status == 409 or status == 429 or status == 0
    return isinstance(error, (OperationalError, DBAPIError))


def _message(error: BaseException) -> str:
    if isinstance(error, stripe.StripeError):
        return error.user_message or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def backoff(attempts: int) -> float:
    """Exponential with full jitter: 1 s, 2 s, 4 s ... capped, randomised so retries spread."""
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** max(attempts - 1, 0))
    return ceiling / 2 + random.random() * ceiling / 2


@dataclass
class Outcome:
    status: SyncStatus
    billing_id: str | None = None
    reason: str | None = None
    error: str | None = None
    objects: dict[str, str] = field(default_factory=dict)
    changed: bool = False


StripeCall = Callable[..., Awaitable[Any]]


@dataclass
class Conn:
    integration_pk: int
    env: m.EnvInfo
    client: stripe.StripeClient
    sync_customers: bool
    sync_subscriptions: bool
    mode: StripeMode
    # `call(name, fn, *args, **kwargs)`: one request to this account, within its budget.
    call: StripeCall


def bucket_name(account_id: str, mode: StripeMode) -> str:
    """The rate bucket of one Stripe account: Stripe limits each account on its own, and its live
    and test modes separately. Fits `rate_buckets.name` whatever the id's length."""
    name = f"stripe:{account_id}:{mode.value.lower()}"
    if len(name) <= 64:
        return name
    return "stripe:" + hashlib.sha256(name.encode()).hexdigest()[:40]


async def _unbudgeted(name: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    return await fn(*args, **kwargs)


class StripeWriter:
    """Creates and updates the Stripe objects of our entities as mapping.py defines them.

    The sync engine (through its request budget) and Checkout (inline, for a customer waiting
    on a payment page) both write through this, so a plan's product, a charge's price, a coupon
    or a customer is one Stripe object with one id, name, metadata and idempotency key,
    whichever of them gets there first.
    """

    def __init__(
        self, client: stripe.StripeClient, env: m.EnvInfo, call: Callable[..., Awaitable[Any]] | None = None
    ) -> None:
        self.client = client
        self.env = env
        self.call = call or _unbudgeted

    async def create(self, name: str, path: str, params: dict[str, Any], key: str) -> str:
        """POST a create through the SDK and return the new object's id.

        The SDK's raw request: the same HTTP, auth, errors and idempotency key, without building
        a StripeObject tree of the whole answer only to read `.id` (the worker's largest cost
        per subscription).
        """
        client = self.client
        # Parameters go as one dict: they may be called "name" like our own arguments.
        request = {**params, "idempotency_key": key}
        response = await self.call(name, lambda: client.raw_request_async("post", path, **request))
        return str(response.data["id"])

    async def create_customer(self, pk: int, params: dict[str, Any]) -> str:
        key = m.idempotency_key(self.env.pk, "customer", pk, "create", params)
        return await self.create("customers.create", "/v1/customers", params, key)

    async def create_coupon(self, pk: int, params: dict[str, Any]) -> str:
        """Create the coupon under its deterministic id (already there is fine)."""
        try:
            await self.call(
                "coupons.create",
                self.client.v1.coupons.create_async,
                params=params,
                options={"idempotency_key": m.idempotency_key(self.env.pk, "coupon", pk, "create", params)},
            )
        except stripe.InvalidRequestError as error:
            if error.code != "resource_already_exists":
                raise
        return params["id"]

    async def ensure_product(
        self, kind: str, pk: int, version: int, params: dict[str, Any], known: bool
    ) -> tuple[str, bool]:
        client = self.client
        if not known:
            try:
                created = await self.call(
                    "products.create",
                    client.v1.products.create_async,
                    params=params,
                    options={
                        "idempotency_key": m.idempotency_key(self.env.pk, kind, pk, "product-create", params)
                    },
                )
                return created.id, True
            except stripe.InvalidRequestError as error:
                if error.code != "resource_already_exists":
                    raise
                # Made by an earlier attempt (or connection): fall through and bring it up to date.
        current = await self.call("products.retrieve", client.v1.products.retrieve_async, params["id"])
        changes: dict[str, Any] = {}
        for key in ("name", "active", "description"):
            if key in params and getattr(current, key, None) != params[key]:
                changes[key] = params[key]
        have_md = m.metadata_of(current)
        if any(have_md.get(k) != v for k, v in params["metadata"].items()):
            changes["metadata"] = params["metadata"]
        if changes:
            await self.call(
                "products.update",
                client.v1.products.update_async,
                params["id"],
                params=changes,
                options={
                    "idempotency_key": m.idempotency_key(
                        self.env.pk, kind, pk, f"product-update-v{version}", changes
                    )
                },
            )
            return params["id"], True
        return params["id"], False

    async def ensure_price(
        self,
        kind: str,
        pk: int,
        charge: Charge,
        product_id: str,
        md: dict[str, str],
        known: str | None,
    ) -> tuple[str, bool]:
        client = self.client
        if known is None:
            params = m.price_params(charge, product_id, md)
            # Charges never change (a new price version makes new charges), so this key is stable.
            price = await self.call(
                "prices.create",
                client.v1.prices.create_async,
                params=params,
                options={
                    "idempotency_key": m.idempotency_key(self.env.pk, kind, pk, f"price-{charge.pk}", params)
                },
            )
            return price.id, True
        price = await self.call("prices.retrieve", client.v1.prices.retrieve_async, known)
        if not price.active:
            params = {"active": True}
            await self.call(
                "prices.update",
                client.v1.prices.update_async,
                known,
                params=params,
                options={
                    "idempotency_key": m.idempotency_key(
                        self.env.pk, kind, pk, f"reactivate-{known}-{int(time.time())}", params
                    )
                },
            )
            return known, True
        return known, False


async def _update(
    conn: Conn,
    entity_type: str,
    update: Any,
    billing_id: str,
    pk: int,
    version: int,
    changes: dict[str, Any],
) -> None:
    """Send Stripe the difference, if any; the key names the change, so a retry is not a second one."""
    if not changes:
        return
    key = m.idempotency_key(conn.env.pk, entity_type, pk, f"update-v{version}", changes)
    await conn.call(
        f"{entity_type}s.update", update, billing_id, params=changes, options={"idempotency_key": key}
    )


class SyncEngine:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        budget: RateBudget | SharedRateBudget | None = None,
        *,
        burst: float | None = None,
    ) -> None:
        """`budget`, when given, is used for every account (tests, tools); by default each Stripe
        account gets its own `SharedRateBudget` (see `budget_for`)."""
        self.database = database
        self.settings = settings
        self.box = SecretBox(settings.secret)
        self.stats = Stats()
        self._clients: dict[tuple[int, str], stripe.StripeClient] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._lock_users: dict[tuple[str, int], int] = {}
        # Integration per environment, read once per claimed batch instead of once per entity.
        self._batch_conns: dict[int, Conn | None] | None = None
        self.concurrency = 8
        # SQLite has one writer: queue our transactions here rather than in SQLite's busy
        # handler, which sleeps in growing steps and would waste most of the budget.
        self._db_lock = asyncio.Lock() if database.is_sqlite else None
        self._budget = budget
        self._burst = burst
        self._budgets: dict[str, RateBudget | SharedRateBudget] = {}

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        if self._db_lock is None:
            async with self.database.session() as session:
                yield session
            return
        async with self._db_lock, self.database.session() as session:
            yield session

    # -- Stripe calls ------------------------------------------------------------------------
    def budget_for(self, bucket: str) -> RateBudget | SharedRateBudget:
        """The request budget of one Stripe account (`bucket_name`): `TOLLGATE_STRIPE_RATE_LIMIT`
        for every worker process together (a token bucket row of that name)."""
        if self._budget is not None:
            return self._budget
        budget = self._budgets.get(bucket)
        if budget is None:
            budget = SharedRateBudget(
                self.database,
                self.settings.stripe_rate_limit,
                burst=self._burst,
                name=bucket,
                session=self._session,
            )
            self._budgets[bucket] = budget
        return budget

    def caller(self, bucket: str) -> StripeCall:
        """`call(name, fn, *args, **kwargs)`: one Stripe request within the budget of `bucket`."""
        budget = self.budget_for(bucket)

        async def call(name: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
            await budget.acquire()
            self.stats.count(name)
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.stats.seconds[name] = self.stats.seconds.get(name, 0.0) + time.perf_counter() - started

        return call

    def writer(self, conn: Conn) -> StripeWriter:
        return StripeWriter(conn.client, conn.env, conn.call)

    async def conn(self, session: AsyncSession, env_pk: int) -> Conn | None:
        row = await session.scalar(
            select(StripeIntegration).where(
                StripeIntegration.environment_pk == env_pk,
                StripeIntegration.status == IntegrationStatus.ACTIVE,
            )
        )
        if row is None:
            return None
        slug = await session.scalar(select(Environment.slug).where(Environment.pk == env_pk))
        key = (row.pk, row.api_key_encrypted)
        client = self._clients.get(key)
        if client is None:
            api_key = self.box.decrypt(row.api_key_encrypted, purpose=f"stripe-integration:{row.ref}:api_key")
            client = stripe_client(api_key, api_base_for(self.settings, row.mode is StripeMode.SANDBOX))
            self._clients[key] = client
        return Conn(
            integration_pk=row.pk,
            env=m.EnvInfo(
                pk=env_pk, slug=slug or "", public_url=self.settings.public_url, integration_ref=row.ref
            ),
            client=client,
            sync_customers=row.sync_customers,
            sync_subscriptions=row.sync_subscriptions,
            mode=row.mode,
            call=self.caller(bucket_name(row.account_id, row.mode)),
        )

    # -- step 1: outbox -> sync states -------------------------------------------------------
    async def ingest_outbox(self, now: dt.datetime, limit: int = 500) -> int:
        async with self._session() as session:
            query = (
                select(OutboxEvent)
                .where(OutboxEvent.processed_at.is_(None), OutboxEvent.available_at <= now)
                .order_by(OutboxEvent.pk)
                .limit(limit)
            )
            if not self.database.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            events = (await session.scalars(query)).all()
            if not events:
                return 0
            connected: dict[int, bool] = {}
            targets: set[tuple[int, str, int]] = set()
            for event in events:
                event.processed_at = now
                env_pk = event.environment_pk
                if env_pk not in connected:
                    connected[env_pk] = (
                        await session.scalar(
                            select(StripeIntegration.pk).where(
                                StripeIntegration.environment_pk == env_pk,
                                StripeIntegration.status == IntegrationStatus.ACTIVE,
                            )
                        )
                        is not None
                    )
                if not connected[env_pk]:
                    continue  # connecting later enqueues everything
                targets |= await self._fan_out(session, env_pk, event.entity_type, event.entity_pk)
            await mark_pending(session, targets, now)
            return len(events)

    async def _fan_out(
        self, session: AsyncSession, env_pk: int, entity_type: str, entity_pk: int
    ) -> set[tuple[int, str, int]]:
        out: set[tuple[int, str, int]] = set()
        if entity_type in SYNCED_TYPES:
            out.add((env_pk, entity_type, entity_pk))
        if entity_type == "subscription":
            customer_pk = await session.scalar(
                select(Subscription.customer_pk).where(Subscription.pk == entity_pk)
            )
            if customer_pk is not None:
                out.add((env_pk, "customer", customer_pk))  # eligibility may have changed
        elif entity_type == "customer":
            # Payment method and currency changes reach the customer's subscriptions.
            for pk in (
                await session.scalars(select(Subscription.pk).where(Subscription.customer_pk == entity_pk))
            ).all():
                out.add((env_pk, "subscription", pk))
        elif entity_type == "product":
            for model, kind in ((Plan, "plan"), (Addon, "addon")):
                for pk in (
                    await session.scalars(select(model.pk).where(model.product_pk == entity_pk))
                ).all():
                    out.add((env_pk, kind, pk))
        elif entity_type == "integration":
            out |= await all_entities(session, env_pk)
            row = await session.get(StripeIntegration, entity_pk)
            if row is not None and row.mode is StripeMode.SANDBOX:
                # Usage billing needs >= 1 h between a renewal invoice's creation and its
                # finalisation. The sandbox always waits an hour; Stripe exposes no API for
                # this Dashboard setting, so Test and Live mode leave it unknown (None) and
                # the integration tells the user to check it.
                row.invoice_grace_period_seconds = SANDBOX_GRACE_PERIOD_SECONDS
        return out

    # -- step 2: sync due states -------------------------------------------------------------
    async def sync_due(self, now: dt.datetime, limit: int = 50) -> int:
        claimed = await self._claim(now, limit)
        if not claimed:
            return 0
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(item: tuple[int, str, int, int, int]) -> None:
            async with semaphore:
                await self.sync_entity(item[0], item[1], item[2], claimed_attempts=item[3], version=item[4])

        outer, self._batch_conns = self._batch_conns, {}
        try:
            # Phases keep the order: catalog and customers first, then subscriptions.
            for phase in ((0, 1), (2,)):
                await asyncio.gather(*(one(c) for c in claimed if _phase(c[1]) in phase))
        finally:
            self._batch_conns = outer
        return len(claimed)

    async def _claim(self, now: dt.datetime, limit: int) -> list[tuple[int, str, int, int, int]]:
        async with self._session() as session:
            query = (
                select(SyncState)
                .where(
                    SyncState.status == SyncStatus.PENDING,
                    or_(SyncState.next_attempt_at.is_(None), SyncState.next_attempt_at <= now),
                    or_(SyncState.claimed_until.is_(None), SyncState.claimed_until < now),
                )
                .order_by(_ORDER, SyncState.next_attempt_at, SyncState.pk)
                .limit(limit)
            )
            if not self.database.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            states = (await session.scalars(query)).all()
            until = now + dt.timedelta(seconds=self.settings.sync_claim_seconds)
            for state in states:
                state.claimed_until = until
                state.attempts += 1
            return [
                (s.environment_pk, s.entity_type, s.entity_pk, s.attempts, s.desired_version) for s in states
            ]

    async def _conn_for(self, session: AsyncSession, env_pk: int) -> Conn | None:
        cache = self._batch_conns
        if cache is None:
            return await self.conn(session, env_pk)
        if env_pk not in cache:
            cache[env_pk] = await self.conn(session, env_pk)
        return cache[env_pk]

    @contextlib.asynccontextmanager
    async def _entity_lock(self, key: tuple[str, int]) -> AsyncIterator[None]:
        """One sync of an entity at a time in this process; the lock is dropped when unused."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key], self._locks[key]

    async def sync_entity(
        self,
        env_pk: int,
        entity_type: str,
        entity_pk: int,
        claimed_attempts: int = 1,
        *,
        version: int | None = None,
    ) -> Outcome:
        """Make Stripe match one entity now, and record the outcome in its sync state.

        `version` is the desired version read when the state was claimed; None reads it.
        """
        async with self._entity_lock((entity_type, entity_pk)):
            conn = self._batch_conns.get(env_pk, False) if self._batch_conns is not None else False
            if version is None or conn is False:
                async with self._session() as session:
                    if version is None:
                        state = await _state(session, env_pk, entity_type, entity_pk)
                        version = state.desired_version if state else 0
                    conn = await self._conn_for(session, env_pk)
            try:
                if conn is None or conn is False:
                    outcome = Outcome(SyncStatus.NOT_SYNCED, reason="no_integration")
                else:
                    handler = getattr(self, f"_sync_{entity_type}")
                    outcome = await handler(conn, entity_pk, claimed_attempts, version)
            except Exception as error:
                if _is_transient(error):
                    logger.info("sync %s %s: transient error: %s", entity_type, entity_pk, _message(error))
                    await self._record_retry(
                        env_pk, entity_type, entity_pk, _message(error), claimed_attempts
                    )
                    return Outcome(SyncStatus.PENDING, error=_message(error))
                if not isinstance(error, stripe.StripeError):
                    logger.exception("sync %s %s failed", entity_type, entity_pk)
                outcome = Outcome(SyncStatus.FAILED, error=_message(error))
            await self._record(env_pk, entity_type, entity_pk, version, outcome)
            if outcome.status is SyncStatus.SYNCED:
                self.stats.synced += 1
                self.stats.changed += int(outcome.changed)
            elif outcome.status is SyncStatus.FAILED:
                self.stats.failed += 1
            return outcome

    async def _record_retry(
        self, env_pk: int, entity_type: str, entity_pk: int, message: str, attempts: int
    ) -> None:
        async with self._session() as session:
            state = await _state(session, env_pk, entity_type, entity_pk, create=True)
            assert state is not None
            state.status = SyncStatus.PENDING
            state.error_message = message
            state.claimed_until = None
            state.next_attempt_at = utcnow() + dt.timedelta(seconds=backoff(attempts))

    async def _record(
        self, env_pk: int, entity_type: str, entity_pk: int, version: int, outcome: Outcome
    ) -> None:
        for attempt in range(5):
            try:
                async with self._session() as session:
                    # One flush at commit instead of one before each of the reads below.
                    with session.no_autoflush:
                        await self._record_in(session, env_pk, entity_type, entity_pk, version, outcome)
                return
            except (OperationalError, DBAPIError):
                # A lock timeout: Stripe already has the change (idempotently), only our note is missing.
                if attempt == 4:
                    raise
                await asyncio.sleep(backoff(attempt + 1) / 4)

    async def _record_in(
        self,
        session: AsyncSession,
        env_pk: int,
        entity_type: str,
        entity_pk: int,
        version: int,
        outcome: Outcome,
    ) -> None:
        now = utcnow()
        known: dict[str, StripeObject] = {}
        if outcome.objects:
            known = {
                row.role: row
                for row in await session.scalars(
                    select(StripeObject).where(
                        StripeObject.environment_pk == env_pk,
                        StripeObject.entity_type == entity_type,
                        StripeObject.entity_pk == entity_pk,
                    )
                )
            }
        for role, stripe_id in outcome.objects.items():
            existing = known.get(role)
            if existing is None:
                session.add(
                    StripeObject(
                        environment_pk=env_pk,
                        entity_type=entity_type,
                        entity_pk=entity_pk,
                        role=role,
                        stripe_id=stripe_id,
                    )
                )
            elif existing.stripe_id != stripe_id:
                existing.stripe_id = stripe_id
        state = await _state(session, env_pk, entity_type, entity_pk, create=True)
        assert state is not None
        if outcome.billing_id:
            state.billing_id = outcome.billing_id
            if entity_type == "customer":
                await session.execute(
                    update(Customer).where(Customer.pk == entity_pk).values(billing_id=outcome.billing_id)
                )
            elif entity_type == "subscription":
                await session.execute(
                    update(Subscription)
                    .where(Subscription.pk == entity_pk)
                    .values(billing_id=outcome.billing_id)
                )
        state.claimed_until = None
        state.reason = outcome.reason
        state.error_message = outcome.error
        if state.desired_version != version and outcome.status is not SyncStatus.FAILED:
            # Changed while we worked: go again with the newer desired state.
            state.status = SyncStatus.PENDING
            state.next_attempt_at = now
            return
        state.status = outcome.status
        state.synced_version = version
        state.next_attempt_at = None
        if outcome.status in (SyncStatus.SYNCED, SyncStatus.NOT_SYNCED):
            state.attempts = 0
            state.last_synced_at = now

    # -- reading our rows --------------------------------------------------------------------
    async def _objects(
        self, session: AsyncSession, env_pk: int, entity_type: str, entity_pk: int
    ) -> dict[str, str]:
        rows = await session.execute(
            select(StripeObject.role, StripeObject.stripe_id).where(
                StripeObject.environment_pk == env_pk,
                StripeObject.entity_type == entity_type,
                StripeObject.entity_pk == entity_pk,
            )
        )
        return {role: stripe_id for role, stripe_id in rows.all()}

    async def _state_of(self, env_pk: int, entity_type: str, entity_pk: int) -> SyncState | None:
        async with self._session() as session:
            return await _state(session, env_pk, entity_type, entity_pk)

    # -- plans and add-ons -------------------------------------------------------------------
    async def _sync_plan(self, conn: Conn, pk: int, attempts: int, version: int) -> Outcome:
        return await self._sync_catalog(conn, "plan", pk, version)

    async def _sync_addon(self, conn: Conn, pk: int, attempts: int, version: int) -> Outcome:
        return await self._sync_catalog(conn, "addon", pk, version)

    async def _sync_catalog(self, conn: Conn, kind: str, pk: int, version: int) -> Outcome:
        model = Plan if kind == "plan" else Addon
        env = conn.env
        async with self._session() as session:
            owner = await session.get(model, pk)
            if owner is None:
                return Outcome(SyncStatus.NOT_SYNCED, reason="deleted")
            product = await session.get_one(Product, owner.product_pk)
            owner_column = PriceVersion.plan_pk if kind == "plan" else PriceVersion.addon_pk
            latest = await session.scalar(
                select(PriceVersion).where(owner_column == pk).order_by(PriceVersion.version.desc()).limit(1)
            )
            charges: list[Charge] = []
            if latest is not None:
                charges = list(
                    (await session.scalars(select(Charge).where(Charge.price_version_pk == latest.pk))).all()
                )
            feature_pks = {c.feature_pk for c in charges if c.feature_pk}
            features = {
                f.pk: f
                for f in (await session.scalars(select(Feature).where(Feature.pk.in_(feature_pks)))).all()
            }
            objects = await self._objects(session, env.pk, kind, pk)
        reason = m.catalog_reason(owner)
        if reason is not None and "product" not in objects:
            return Outcome(SyncStatus.NOT_SYNCED, reason=reason)
        md = m.metadata(env, kind, owner.ref)
        active = m.catalog_active(owner)
        wanted_products = m.catalog_products(env, kind, owner, product.name, charges, features)
        out = Outcome(SyncStatus.SYNCED)
        for role, params in wanted_products.items():
            stripe_id, changed = await self.writer(conn).ensure_product(
                kind, pk, version, params, role in objects
            )
            out.objects[role] = stripe_id
            out.changed |= changed
        wanted_prices: set[str] = set()
        if active:
            for charge in charges:
                role = m.price_role(charge)
                wanted_prices.add(role)
                product_id = out.objects[m.charge_product_role(charge)]
                stripe_id, changed = await self.writer(conn).ensure_price(
                    kind, pk, charge, product_id, md, objects.get(role)
                )
                out.objects[role] = stripe_id
                out.changed |= changed
        # Older price versions: archived in Stripe; subscriptions on them keep their price.
        for role, stripe_id in objects.items():
            if role.startswith("price:") and role not in wanted_prices and active:
                price = await conn.call("prices.retrieve", conn.client.v1.prices.retrieve_async, stripe_id)
                if price.active:
                    params = {"active": False}
                    await conn.call(
                        "prices.update",
                        conn.client.v1.prices.update_async,
                        stripe_id,
                        params=params,
                        options={
                            "idempotency_key": m.idempotency_key(
                                env.pk, kind, pk, f"archive-{stripe_id}", params
                            )
                        },
                    )
                    out.changed = True
        out.billing_id = out.objects["product"]
        out.reason = reason
        if reason is not None:
            out.status = SyncStatus.NOT_SYNCED
        return out

    # -- coupons -----------------------------------------------------------------------------
    async def _sync_coupon(self, conn: Conn, pk: int, attempts: int, version: int) -> Outcome:
        async with self._session() as session:
            coupon = await session.get(Coupon, pk)
            objects = await self._objects(session, conn.env.pk, "coupon", pk)
        if coupon is None:
            return Outcome(SyncStatus.NOT_SYNCED, reason="deleted")
        params = m.coupon_params(conn.env, coupon)
        coupon_id = params["id"]
        client = conn.client
        if coupon.status is CatalogStatus.ARCHIVED:
            if "coupon" not in objects:
                return Outcome(SyncStatus.NOT_SYNCED, reason="archived")
            try:
                await conn.call("coupons.delete", client.v1.coupons.delete_async, coupon_id)
                changed = True
            except stripe.InvalidRequestError as error:
                if error.http_status != 404:
                    raise
                changed = False  # deleted already
            return Outcome(
                SyncStatus.SYNCED, billing_id=coupon_id, objects={"coupon": coupon_id}, changed=changed
            )
        if "coupon" in objects:
            current = await conn.call("coupons.retrieve", client.v1.coupons.retrieve_async, coupon_id)
            changes: dict[str, Any] = {}
            if current.name != params["name"]:
                changes["name"] = params["name"]
            if any(m.metadata_of(current).get(k) != v for k, v in params["metadata"].items()):
                changes["metadata"] = params["metadata"]
            if changes:
                await conn.call(
                    "coupons.update",
                    client.v1.coupons.update_async,
                    coupon_id,
                    params=changes,
                    options={
                        "idempotency_key": m.idempotency_key(conn.env.pk, "coupon", pk, "update", changes)
                    },
                )
            return Outcome(
                SyncStatus.SYNCED, billing_id=coupon_id, objects={"coupon": coupon_id}, changed=bool(changes)
            )
        await self.writer(conn).create_coupon(pk, params)
        return Outcome(SyncStatus.SYNCED, billing_id=coupon_id, objects={"coupon": coupon_id}, changed=True)

    # -- customers ---------------------------------------------------------------------------
    async def _sync_customer(self, conn: Conn, pk: int, attempts: int, version: int) -> Outcome:
        env = conn.env
        async with self._session() as session:
            customer = await session.get(Customer, pk)
            if customer is None:
                return Outcome(SyncStatus.NOT_SYNCED, reason="deleted")
            result = await session.execute(
                select(Subscription, Plan)
                .join(Plan, Plan.pk == Subscription.plan_pk)
                .where(Subscription.customer_pk == pk)
            )
            subs = [(row[0], row[1]) for row in result.all()]
        if not conn.sync_customers:
            return Outcome(SyncStatus.NOT_SYNCED, reason="customer_sync_disabled")
        params = m.customer_params(env, customer)
        client = conn.client
        billing_id = customer.billing_id
        if billing_id is None:
            reason = m.customer_reason(subs)
            if reason is not None:
                return Outcome(SyncStatus.NOT_SYNCED, reason=reason)
            if attempts > 1:
                # An earlier attempt may have created it and died before recording it.
                found = await conn.call(
                    "customers.search",
                    client.v1.customers.search_async,
                    params={
                        "query": f"metadata['tollgateEntityId']:'{customer.ref}' AND metadata['tollgateEnvironment']:'{env.slug}'"
                    },
                )
                if found.data:
                    billing_id = found.data[0].id
            if billing_id is None:
                created = await self.writer(conn).create_customer(pk, params)
                return Outcome(
                    SyncStatus.SYNCED, billing_id=created, objects={"customer": created}, changed=True
                )
        current = await conn.call("customers.retrieve", client.v1.customers.retrieve_async, billing_id)
        if getattr(current, "deleted", False):
            return Outcome(
                SyncStatus.FAILED,
                billing_id=billing_id,
                error="The customer was deleted in Stripe; Tollgate will not recreate it on its own.",
            )
        changes = m.customer_differs(params, current)
        await _update(conn, "customer", client.v1.customers.update_async, billing_id, pk, version, changes)
        return Outcome(
            SyncStatus.SYNCED, billing_id=billing_id, objects={"customer": billing_id}, changed=bool(changes)
        )

    # -- subscriptions -----------------------------------------------------------------------
    async def _sync_subscription(self, conn: Conn, pk: int, attempts: int, version: int) -> Outcome:
        env = conn.env
        client = conn.client
        async with self._session() as session:
            sub = await session.get(Subscription, pk)
            if sub is None:
                return Outcome(SyncStatus.NOT_SYNCED, reason="deleted")
            plan = await session.get_one(Plan, sub.plan_pk)
            customer = await session.get_one(Customer, sub.customer_pk)
            # Everything the desired items need, in this one transaction (the hot path).
            rows = await _load_subscription_rows(session, env.pk, sub)
            awaiting_checkout = (
                sub.billing_id is None
                and sub.status is S.PAYMENT_PENDING
                and await session.scalar(
                    select(CheckoutSession.pk)
                    .where(
                        CheckoutSession.subscription_pk == pk, CheckoutSession.status == CheckoutStatus.OPEN
                    )
                    .limit(1)
                )
                is not None
            )
        ended = sub.status in (S.CANCELED, S.EXPIRED)
        reason = m.billable(sub, plan)
        if not conn.sync_subscriptions:
            return Outcome(SyncStatus.NOT_SYNCED, reason="subscription_sync_disabled")
        if sub.billing_id and (ended or reason is not None):
            return await self._cancel_in_stripe(conn, sub, reason)
        if ended:
            return Outcome(SyncStatus.NOT_SYNCED, reason="ended")
        if reason is not None:
            return Outcome(SyncStatus.NOT_SYNCED, reason=reason)
        if awaiting_checkout:
            # Paying on the Checkout page creates the Stripe subscription; a second one made
            # here would bill the customer twice. Completion records its id and syncs it.
            return Outcome(SyncStatus.NOT_SYNCED, reason="awaiting_checkout")
        # Dependencies first: the customer, the prices, the coupon.
        if customer.billing_id is None:
            customer_state = await self._state_of(env.pk, "customer", customer.pk)
            if customer_state is not None and customer_state.status is SyncStatus.FAILED:
                # A permanent error stays until someone retries the customer (which retries this too).
                return Outcome(
                    SyncStatus.FAILED,
                    reason="customer_failed",
                    error=f"Its customer could not be synced: {customer_state.error_message}",
                )
            await self.sync_entity(env.pk, "customer", customer.pk)
            async with self._session() as session:
                customer = await session.get_one(Customer, sub.customer_pk)
            if customer.billing_id is None:
                state = await self._state_of(env.pk, "customer", customer.pk)
                if state is not None and state.status is SyncStatus.PENDING:
                    raise Transient(state.error_message or "waiting for the customer to reach Stripe")
                return Outcome(SyncStatus.NOT_SYNCED, reason="customer_not_synced")
        items, coupon_id = await self._desired_items(conn, sub, customer, rows)
        md = m.metadata(env, "subscription", sub.ref)
        desired: dict[str, Any] = {"metadata": md}
        if customer.has_payment_method:
            desired["collection_method"] = "charge_automatically"
        else:
            desired["collection_method"] = "send_invoice"
            desired["days_until_due"] = 30
        desired["cancel_at_period_end"] = bool(sub.cancel_at)
        if coupon_id:
            desired["discounts"] = [{"coupon": coupon_id}]
        billing_id = sub.billing_id
        if billing_id is None:
            if rows.live_in_stripe >= m.MAX_SUBSCRIPTIONS_PER_CUSTOMER:
                return Outcome(
                    SyncStatus.FAILED,
                    reason="subscription_limit",
                    error=f"Stripe allows at most {m.MAX_SUBSCRIPTIONS_PER_CUSTOMER} active subscriptions per "
                    f"customer, and customer '{customer.ref}' has that many already. Cancel one, then retry.",
                )
            if attempts > 1:
                billing_id = await self._find_subscription(conn, customer.billing_id or "", sub.ref)
            if billing_id is None:
                params: dict[str, Any] = {
                    "customer": customer.billing_id,
                    "items": [{"price": price, "quantity": qty} for price, qty in items.items()],
                    **desired,
                }
                if not params["cancel_at_period_end"]:
                    params.pop("cancel_at_period_end")
                if sub.status is S.IN_TRIAL and sub.trial_end and sub.trial_end > utcnow():
                    params["trial_end"] = int(sub.trial_end.timestamp())
                created = await self.writer(conn).create(
                    "subscriptions.create",
                    "/v1/subscriptions",
                    params,
                    m.idempotency_key(env.pk, "subscription", pk, "create", params),
                )
                return Outcome(
                    SyncStatus.SYNCED, billing_id=created, objects={"subscription": created}, changed=True
                )
        current = await conn.call(
            "subscriptions.retrieve", client.v1.subscriptions.retrieve_async, billing_id
        )
        if current.status in ("canceled", "incomplete_expired"):
            # Stripe ended it (a webhook brings that back to Tollgate); never resurrect it here.
            return Outcome(SyncStatus.SYNCED, billing_id=billing_id, objects={"subscription": billing_id})
        changes = _subscription_changes(current, items, desired)
        await _update(
            conn, "subscription", client.v1.subscriptions.update_async, billing_id, pk, version, changes
        )
        return Outcome(
            SyncStatus.SYNCED,
            billing_id=billing_id,
            objects={"subscription": billing_id},
            changed=bool(changes),
        )

    async def _find_subscription(self, conn: Conn, customer_id: str, ref: str) -> str | None:
        page = await conn.call(
            "subscriptions.list",
            conn.client.v1.subscriptions.list_async,
            params={"customer": customer_id, "status": "all", "limit": 100},
        )
        for found in page.data:
            md = m.metadata_of(found)
            if md.get("tollgateEntityId") == ref and md.get("tollgateEnvironment") == conn.env.slug:
                return found.id
        return None

    async def _cancel_in_stripe(self, conn: Conn, sub: Subscription, reason: str | None) -> Outcome:
        assert sub.billing_id is not None
        current = await conn.call(
            "subscriptions.retrieve", conn.client.v1.subscriptions.retrieve_async, sub.billing_id
        )
        changed = False
        if current.status not in ("canceled", "incomplete_expired"):
            await conn.call(
                "subscriptions.cancel",
                conn.client.v1.subscriptions.cancel_async,
                sub.billing_id,
                options={
                    "idempotency_key": m.idempotency_key(
                        conn.env.pk, "subscription", sub.pk, "cancel", sub.billing_id
                    )
                },
            )
            changed = True
        return Outcome(
            SyncStatus.SYNCED,
            billing_id=sub.billing_id,
            objects={"subscription": sub.billing_id},
            changed=changed,
        )

    async def _desired_items(
        self, conn: Conn, sub: Subscription, customer: Customer, rows: _SubscriptionRows
    ) -> tuple[dict[str, int], str | None]:
        """{Stripe price id: quantity} for the subscription, syncing missing prices first."""
        env = conn.env
        coupon = rows.coupon
        owners: list[tuple[str, int, int | None, int]] = [("plan", sub.plan_pk, sub.price_version_pk, 1)]
        for row in rows.addons:
            owners.append(("addon", row.addon_pk, row.price_version_pk, row.quantity))
        items: dict[str, int] = {}
        features = rows.features
        for kind, owner_pk, version_pk, quantity in owners:
            if version_pk is None:
                continue
            charges = rows.charges.get(version_pk, [])
            objects = dict(rows.objects.get((kind, owner_pk), {}))
            currency = (customer.currency or "").lower()
            charges = [
                c
                for c in charges
                if c.billing_period is sub.billing_period
                and (not currency or c.currency.lower() == currency)
                and c.billing_model is not BillingModel.USAGE_BASED
            ]
            if any(m.price_role(c) not in objects for c in charges):
                outcome = await self.sync_entity(env.pk, kind, owner_pk)
                if outcome.status is SyncStatus.PENDING:
                    raise Transient(outcome.error or f"waiting for the {kind}'s prices")
                async with self._session() as session:
                    objects = await self._objects(session, env.pk, kind, owner_pk)
                missing = [c for c in charges if m.price_role(c) not in objects]
                for charge in missing:
                    # An older price version a subscription still uses: give it its price.
                    product_role = m.charge_product_role(charge)
                    if product_role not in objects:
                        raise stripe.InvalidRequestError(
                            f"The {kind}'s Stripe product is missing; sync the {kind} first.", None
                        )
                    price_id, _ = await self.writer(conn).ensure_price(
                        kind, owner_pk, charge, objects[product_role], {}, None
                    )
                    await self._add_object(env.pk, kind, owner_pk, m.price_role(charge), price_id)
                    objects[m.price_role(charge)] = price_id
            for charge in charges:
                if charge.billing_model is BillingModel.FLAT_FEE:
                    qty = quantity
                else:
                    ref = features.get(charge.feature_pk or 0, "")
                    qty = int((sub.unit_quantities or {}).get(ref, 1)) * (quantity if kind == "addon" else 1)
                price_id = objects[m.price_role(charge)]
                items[price_id] = items.get(price_id, 0) + max(qty, 0)
        coupon_id = None
        if coupon is not None:
            coupon_id = m.coupon_params(env, coupon)["id"]
            if not rows.coupon_in_stripe:
                await self.sync_entity(env.pk, "coupon", coupon.pk)
        return {p: q for p, q in items.items() if q > 0}, coupon_id

    async def _add_object(
        self, env_pk: int, entity_type: str, entity_pk: int, role: str, stripe_id: str
    ) -> None:
        async with self._session() as session:
            session.add(
                StripeObject(
                    environment_pk=env_pk,
                    entity_type=entity_type,
                    entity_pk=entity_pk,
                    role=role,
                    stripe_id=stripe_id,
                )
            )


def _subscription_changes(current: Any, items: dict[str, int], desired: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    have: dict[str, tuple[str, int]] = {}
    for item in current["items"].data:
        have[item.price.id] = (item.id, item.quantity or 0)
    item_changes: list[dict[str, Any]] = []
    for price_id, (item_id, qty) in have.items():
        if price_id not in items:
            item_changes.append({"id": item_id, "deleted": True})
        elif items[price_id] != qty:
            item_changes.append({"id": item_id, "quantity": items[price_id]})
    for price_id, qty in items.items():
        if price_id not in have:
            item_changes.append({"price": price_id, "quantity": qty})
    if item_changes:
        changes["items"] = item_changes
    have_md = m.metadata_of(current)
    if any(have_md.get(k) != v for k, v in desired["metadata"].items()):
        changes["metadata"] = desired["metadata"]
    if bool(current.cancel_at_period_end) != desired["cancel_at_period_end"]:
        changes["cancel_at_period_end"] = desired["cancel_at_period_end"]
    if current.collection_method != desired["collection_method"]:
        changes["collection_method"] = desired["collection_method"]
        if "days_until_due" in desired:
            changes["days_until_due"] = desired["days_until_due"]
    wanted_coupons = [d["coupon"] for d in desired.get("discounts", [])]
    have_coupons: list[str] = []
    for discount in current.discounts or []:
        if isinstance(discount, str):
            continue  # an id only: compare coupons only when expanded
        coupon = getattr(getattr(discount, "source", None), "coupon", None) or getattr(
            discount, "coupon", None
        )
        coupon_id = coupon if isinstance(coupon, str) else getattr(coupon, "id", None)
        if coupon_id:
            have_coupons.append(coupon_id)
    if wanted_coupons and not (current.discounts or []):
        changes["discounts"] = desired["discounts"]
    elif have_coupons and set(have_coupons) != set(wanted_coupons):
        changes["discounts"] = desired.get("discounts") or ""
    return changes


@dataclass
class _SubscriptionRows:
    addons: list[SubscriptionAddon]
    coupon: Coupon | None
    coupon_in_stripe: bool
    charges: dict[int, list[Charge]]  # by price version pk
    features: dict[int, str]  # feature pk -> ref
    objects: dict[tuple[str, int], dict[str, str]]  # (kind, owner pk) -> {role: Stripe id}
    live_in_stripe: int  # the customer's live subscriptions already in Stripe


async def _load_subscription_rows(session: AsyncSession, env_pk: int, sub: Subscription) -> _SubscriptionRows:
    addons = list(
        (
            await session.scalars(
                select(SubscriptionAddon).where(SubscriptionAddon.subscription_pk == sub.pk)
            )
        ).all()
    )
    coupon = await session.get(Coupon, sub.coupon_pk) if sub.coupon_pk else None
    coupon_in_stripe = False
    if coupon is not None:
        state = await _state(session, env_pk, "coupon", coupon.pk)
        coupon_in_stripe = state is not None and state.billing_id is not None
    version_pks = [
        pk for pk in [sub.price_version_pk, *(a.price_version_pk for a in addons)] if pk is not None
    ]
    charges: dict[int, list[Charge]] = {}
    for charge in (
        await session.scalars(
            select(Charge).where(Charge.price_version_pk.in_(version_pks)).order_by(Charge.pk)
        )
    ).all():
        charges.setdefault(charge.price_version_pk, []).append(charge)
    feature_pks = {c.feature_pk for group in charges.values() for c in group if c.feature_pk}
    features: dict[int, str] = {}
    if feature_pks:
        features = dict(
            (await session.execute(select(Feature.pk, Feature.ref).where(Feature.pk.in_(feature_pks)))).all()  # type: ignore[arg-type]
        )
    owner_rule = or_(
        (StripeObject.entity_type == "plan") & (StripeObject.entity_pk == sub.plan_pk),
        (StripeObject.entity_type == "addon") & StripeObject.entity_pk.in_([a.addon_pk for a in addons]),
    )
    objects: dict[tuple[str, int], dict[str, str]] = {}
    for kind, owner_pk, role, stripe_id in (
        await session.execute(
            select(
                StripeObject.entity_type, StripeObject.entity_pk, StripeObject.role, StripeObject.stripe_id
            ).where(StripeObject.environment_pk == env_pk, owner_rule)
        )
    ).all():
        objects.setdefault((kind, owner_pk), {})[role] = stripe_id
    live = 0
    if sub.billing_id is None:
        live = (
            await session.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(
                    Subscription.customer_pk == sub.customer_pk,
                    Subscription.billing_id.is_not(None),
                    Subscription.status.in_(list(m.LIVE)),
                )
            )
            or 0
        )
    return _SubscriptionRows(addons, coupon, coupon_in_stripe, charges, features, objects, live)


def _phase(entity_type: str) -> int:
    return {"plan": 0, "addon": 0, "coupon": 0, "customer": 1}.get(entity_type, 2)


async def _state(
    session: AsyncSession, env_pk: int, entity_type: str, entity_pk: int, *, create: bool = False
) -> SyncState | None:
    state = await session.scalar(
        select(SyncState).where(SyncState.entity_type == entity_type, SyncState.entity_pk == entity_pk)
    )
    if state is None and create:
        state = SyncState(
            environment_pk=env_pk,
            entity_type=entity_type,
            entity_pk=entity_pk,
            status=SyncStatus.PENDING,
            desired_version=1,
            synced_version=0,
            attempts=0,
        )
        session.add(state)
        await session.flush()
    return state


async def mark_pending(session: AsyncSession, targets: set[tuple[int, str, int]], now: dt.datetime) -> None:
    """Bump the desired version of each entity: the worker will make Stripe match it."""
    for env_pk, entity_type, entity_pk in sorted(targets, key=lambda t: (t[1], t[2])):
        state = await _state(session, env_pk, entity_type, entity_pk)
        if state is None:
            session.add(
                SyncState(
                    environment_pk=env_pk,
                    entity_type=entity_type,
                    entity_pk=entity_pk,
                    status=SyncStatus.PENDING,
                    desired_version=1,
                    synced_version=0,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
            continue
        state.desired_version += 1
        if state.status is not SyncStatus.PENDING:
            state.attempts = 0
        state.status = SyncStatus.PENDING
        state.next_attempt_at = now
    await session.flush()


async def all_entities(session: AsyncSession, env_pk: int) -> set[tuple[int, str, int]]:
    out: set[tuple[int, str, int]] = set()
    for model, kind in (
        (Plan, "plan"),
        (Addon, "addon"),
        (Coupon, "coupon"),
        (Customer, "customer"),
        (Subscription, "subscription"),
    ):
        for pk in (await session.scalars(select(model.pk).where(model.environment_pk == env_pk))).all():
            out.add((env_pk, kind, pk))
    return out
