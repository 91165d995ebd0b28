from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from app.core.schemas import ApiStruct, CurrencyCode, CustomerRefId, Metadata, Name, OutStruct, RefId

Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]


class Address(ApiStruct):
    line1: ShortText | None = None
    line2: ShortText | None = None
    city: ShortText | None = None
    state: ShortText | None = None
    postal_code: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    country: Annotated[str, msgspec.Meta(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")] | None = None


class TaxId(ApiStruct):
    type: Annotated[str, msgspec.Meta(min_length=2, max_length=20, pattern=r"^[a-z_]+$")]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]


class BillingInfo(ApiStruct):
    address: Address | None = None
    invoice_name: Name | None = None
    phone: Annotated[str, msgspec.Meta(max_length=30)] | None = None
    tax_ids: Annotated[list[TaxId], msgspec.Meta(max_length=5)] = msgspec.field(default_factory=list)


class CustomerUpsert(ApiStruct):
    id: CustomerRefId
    name: Name | None = None
    email: Email | None = None
    billing_info: BillingInfo | None = None
    currency: CurrencyCode | None = None
    coupon_id: RefId | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class CustomerUpdate(ApiStruct):
    name: Name | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET
    billing_info: BillingInfo | UnsetType | None = UNSET
    currency: CurrencyCode | UnsetType | None = UNSET
    coupon_id: RefId | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET


class CustomerOut(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    name: str | None
    email: str | None
    billing_info: BillingInfo
    currency: str | None
    coupon_id: str | None
    metadata: dict[str, str]
    billing_id: str | None
    has_payment_method: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class TokenRequest(ApiStruct):
    # Seconds the token stays valid: from a minute to a day.
    expires_in: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600


class TokenOut(OutStruct):
    customer_id: str
    token: str
    expires_at: dt.datetime
