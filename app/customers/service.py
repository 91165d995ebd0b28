"""Customers: created by the host app with its own ids; billing information; customer tokens."""

from __future__ import annotations

import datetime as dt
import time

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import CatalogStatus, Coupon
from app.core.errors import Unprocessable, not_found
from app.core.keys import sign_customer_token
from app.core.money import normalize_currency
from app.core.outbox import record_change
from app.core.pagination import Page, paginate
from app.core.schemas import unset_fields
from app.customers.models import Customer
from app.customers.schemas import BillingInfo, CustomerOut, CustomerUpdate, CustomerUpsert, TokenOut
from app.environments.models import Environment
from app.environments.service import EnvironmentRef


def customer_out(c: Customer, coupon_ref: str | None) -> CustomerOut:
    return CustomerOut(
        id=c.ref,
        name=c.name,
        email=c.email,
        billing_info=msgspec.convert(c.billing_info or {}, BillingInfo),
        currency=c.currency,
        coupon_id=coupon_ref,
        metadata=c.metadata_,
        billing_id=c.billing_id,
        has_payment_method=c.has_payment_method,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


async def get_customer_row(session: AsyncSession, env: EnvironmentRef, ref: str) -> Customer:
    customer = await session.scalar(
        select(Customer).where(Customer.environment_pk == env.pk, Customer.ref == ref)
    )
    if customer is None:
        raise not_found("customer", ref)
    return customer


async def _coupon_pk(session: AsyncSession, env: EnvironmentRef, ref: str | None) -> int | None:
    if ref is None:
        return None
    row = (
        await session.execute(
            select(Coupon.pk, Coupon.status).where(Coupon.environment_pk == env.pk, Coupon.ref == ref)
        )
    ).first()
    if row is None:
        error = not_found("coupon", ref)
        error.param = "couponId"
        raise error
    if row.status is CatalogStatus.ARCHIVED:
        raise Unprocessable(f"Coupon '{ref}' is archived.", code="coupon_archived", param="couponId")
    return row.pk


async def _coupon_ref(session: AsyncSession, coupon_pk: int | None) -> str | None:
    return await session.scalar(select(Coupon.ref).where(Coupon.pk == coupon_pk)) if coupon_pk else None


def _billing_info(info: BillingInfo | None) -> dict[str, object]:
    return msgspec.to_builtins(info) if info is not None else {}


async def upsert_customer(
    session: AsyncSession, env: EnvironmentRef, data: CustomerUpsert
) -> tuple[CustomerOut, bool]:
    """Create the customer, or update it if the id exists: safe to repeat. Returns (customer, created)."""
    customer = await session.scalar(
        select(Customer).where(Customer.environment_pk == env.pk, Customer.ref == data.id)
    )
    created = customer is None
    coupon_pk = await _coupon_pk(session, env, data.coupon_id)
    currency = normalize_currency(data.currency) if data.currency else None
    if customer is None:
        customer = Customer(environment_pk=env.pk, ref=data.id)
        session.add(customer)
    customer.name = data.name
    customer.email = data.email
    customer.billing_info = _billing_info(data.billing_info)
    customer.currency = currency
    customer.coupon_pk = coupon_pk
    customer.metadata_ = dict(data.metadata)
    customer.archived_at = None
    await session.flush()
    record_change(session, env.pk, "customer", customer.pk, "created" if created else "updated")
    return customer_out(customer, data.coupon_id), created


async def get_customer(session: AsyncSession, env: EnvironmentRef, ref: str) -> CustomerOut:
    customer = await get_customer_row(session, env, ref)
    return customer_out(customer, await _coupon_ref(session, customer.coupon_pk))


async def list_customers(
    session: AsyncSession, env: EnvironmentRef, *, limit: int, starting_after: str | None, search: str | None
) -> Page[CustomerOut]:
    query = select(Customer).where(Customer.environment_pk == env.pk)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            Customer.ref.ilike(pattern, escape="\\")
            | Customer.name.ilike(pattern, escape="\\")
            | Customer.email.ilike(pattern, escape="\\")
        )
    rows, more = await paginate(
        session,
        query,
        Customer,
        environment_pk=env.pk,
        limit=limit,
        starting_after=starting_after,
        entity="customer",
    )
    coupon_pks = {r.coupon_pk for r in rows if r.coupon_pk}
    coupon_refs = {
        pk: ref
        for pk, ref in await session.execute(select(Coupon.pk, Coupon.ref).where(Coupon.pk.in_(coupon_pks)))
    }
    return Page(
        data=[customer_out(r, coupon_refs.get(r.coupon_pk) if r.coupon_pk else None) for r in rows],
        has_more=more,
        next_cursor=rows[-1].ref if more else None,
    )


async def update_customer(
    session: AsyncSession, env: EnvironmentRef, ref: str, data: CustomerUpdate
) -> CustomerOut:
    customer = await get_customer_row(session, env, ref)
    fields = unset_fields(data)
    if "coupon_id" in fields:
        customer.coupon_pk = await _coupon_pk(session, env, fields.pop("coupon_id"))
    if "billing_info" in fields:
        customer.billing_info = _billing_info(fields.pop("billing_info"))
    if "currency" in fields:
        value = fields.pop("currency")
        customer.currency = normalize_currency(value) if value else None
    if "metadata" in fields:
        customer.metadata_ = dict(fields.pop("metadata"))
    for field, value in fields.items():
        setattr(customer, field, value)
    await session.flush()
    record_change(session, env.pk, "customer", customer.pk, "updated")
    return customer_out(customer, await _coupon_ref(session, customer.coupon_pk))


async def token_signing_key(session: AsyncSession, env: EnvironmentRef) -> bytes:
    """Customer tokens are keyed by the SHA-256 (hex) of the environment's server key.

    So the host app can mint tokens itself without calling us (the documented formula),
    and rotating the server key revokes every token minted with the old one.
    """
    digest = await session.scalar(select(Environment.server_key_hash).where(Environment.pk == env.pk))
    assert digest is not None
    return digest.encode()


async def mint_customer_token(
    session: AsyncSession, env: EnvironmentRef, ref: str, expires_in: int
) -> TokenOut:
    await get_customer_row(session, env, ref)
    expires_at = int(time.time()) + expires_in
    token = sign_customer_token(await token_signing_key(session, env), ref, expires_at)
    return TokenOut(customer_id=ref, token=token, expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC))
