"""Controllers for subscriptions, entitlements and usage: parse, call one service, render."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.provisioning import preview_with_billing, provision_with_billing
from app.billing.schemas import BillingProvisionResult, ProvisionWithCheckout
from app.core.pagination import DEFAULT_LIMIT, Page
from app.db import Database, utcnow
from app.environments.service import EnvironmentRef
from app.settings import Settings
from app.subscriptions import entitlements, service, usage
from app.subscriptions.checks import fast_check
from app.subscriptions.models import SubscriptionStatus
from app.subscriptions.schemas import (
    CancelRequest,
    EntitlementCheck,
    EntitlementList,
    PreviewResult,
    ProvisionResult,
    ReportUsageRequest,
    ReportUsageResult,
    SubscriptionOut,
    UpdateRequest,
)


class SubscriptionController(Controller):
    path = "/subscriptions"
    tags = ["subscriptions"]

    @post("/", status_code=201)
    async def provision(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        data: ProvisionWithCheckout,
    ) -> BillingProvisionResult:
        return await provision_with_billing(db_session, settings, environment, data)

    @post("/preview", status_code=200)
    async def preview(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: ProvisionWithCheckout
    ) -> PreviewResult:
        # The same body as POST /subscriptions: with checkoutOptions, an upgrade that will wait
        # for payment is priced as the new subscription Checkout sells (`paymentFirst`).
        return await preview_with_billing(
            db_session, environment.pk, data, offers_checkout=data.checkout_options is not None
        )

    @get("/")
    async def list_subscriptions(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        customer_id: Annotated[str | None, Parameter(query="customerId")] = None,
        status: Annotated[SubscriptionStatus | None, Parameter(query="status")] = None,
        limit: Annotated[int, Parameter(query="limit")] = DEFAULT_LIMIT,
        starting_after: Annotated[str | None, Parameter(query="startingAfter")] = None,
    ) -> Page[SubscriptionOut]:
        return await service.list_subscriptions(
            db_session,
            environment.pk,
            customer_ref=customer_id,
            status=status,
            limit=limit,
            starting_after=starting_after,
        )

    @get("/{subscription_id:str}")
    async def get_subscription(
        self, db_session: AsyncSession, environment: EnvironmentRef, subscription_id: str
    ) -> SubscriptionOut:
        return await service.get_subscription(db_session, environment.pk, subscription_id)

    @patch("/{subscription_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, subscription_id: str, data: UpdateRequest
    ) -> ProvisionResult:
        return await service.update_subscription(db_session, environment.pk, subscription_id, data)

    @post("/{subscription_id:str}/cancel", status_code=200)
    async def cancel(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        subscription_id: str,
        data: CancelRequest | None = None,
    ) -> SubscriptionOut:
        return await service.cancel_subscription(
            db_session, environment.pk, subscription_id, data or CancelRequest()
        )

    @delete("/{subscription_id:str}/scheduled-change", status_code=200)
    async def cancel_scheduled_change(
        self, db_session: AsyncSession, environment: EnvironmentRef, subscription_id: str
    ) -> SubscriptionOut:
        return await service.cancel_scheduled_change(db_session, environment.pk, subscription_id)


class EntitlementController(Controller):
    path = "/customers/{customer_id:str}/entitlements"
    tags = ["entitlements"]

    @get("/")
    async def list_entitlements(
        self, db_session: AsyncSession, environment: EnvironmentRef, customer_id: str
    ) -> EntitlementList:
        data = await entitlements.list_entitlements(db_session, environment.pk, customer_id)
        return EntitlementList(customer_id=customer_id, data=data)

    @get("/{feature_id:str}")
    async def check(
        self,
        database: Database,
        environment: EnvironmentRef,
        customer_id: str,
        feature_id: str,
        requested_usage: Annotated[
            int | None,
            Parameter(
                query="requestedUsage",
                ge=0,
                description='Units about to be used. METERED: defaults to 1 ("may I use one more?"). '
                "NUMBER: optional, compared with the limit. A soft limit grants access past the limit.",
            ),
        ] = None,
    ) -> EntitlementCheck:
        # The hot path needs no session; only an unusual case opens one.
        now = utcnow()
        fast = await fast_check(database.fast, environment.pk, customer_id, feature_id, requested_usage, now)
        if fast is not None:
            return fast
        async with database.session() as session:
            return await entitlements.check_entitlement(
                session, environment.pk, customer_id, feature_id, requested_usage=requested_usage, now=now
            )


@post("/usage", status_code=200, tags=["usage"])
async def report_usage(
    db_session: AsyncSession, environment: EnvironmentRef, data: ReportUsageRequest
) -> ReportUsageResult:
    return await usage.report_usage(db_session, environment.pk, data.usages)


SUBSCRIPTION_HANDLERS: list[Any] = [SubscriptionController, EntitlementController, report_usage]
