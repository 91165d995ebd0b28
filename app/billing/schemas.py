from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from app.billing.models import IntegrationStatus, StripeMode
from app.core.schemas import ApiStruct, OutStruct

StripeKey = Annotated[str, msgspec.Meta(min_length=10, max_length=300, pattern=r"^[A-Za-z0-9_]+$")]


class IntegrationConnect(ApiStruct):
    mode: StripeMode
    api_key: StripeKey | None = None


class IntegrationUpdate(ApiStruct):
    sync_customers: bool | UnsetType = UNSET
    sync_subscriptions: bool | UnsetType = UNSET
    stripe_tax: bool | UnsetType = UNSET


class Permission(OutStruct):
    resource: str
    access: str  # "read" or "write"


class IntegrationOut(OutStruct):
    integration_id: str
    mode: StripeMode
    status: IntegrationStatus
    account_id: str
    account_name: str | None
    api_key_hint: str
    webhook_endpoint_id: str | None
    sync_customers: bool
    sync_subscriptions: bool
    stripe_tax: bool
    invoice_grace_period_seconds: int | None
    grace_period_ok: bool | None
    dashboard_url: str
    created_at: dt.datetime
    updated_at: dt.datetime


class PermissionsOut(OutStruct):
    permissions: list[Permission]
