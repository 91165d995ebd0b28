"""Read-only queries behind the console's lists: search by id or name, filter, page, all in SQL.

The catalog services list without search (the API does not offer one yet), so the console
keeps its list queries here; every write still goes through the domain services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.catalog.models import Addon, Coupon, Feature, Plan, Product
from app.core.pagination import paginate
from app.customers.models import Customer
from app.environments.service import EnvironmentRef
from app.subscriptions.models import Subscription

PAGE_SIZE = 25

LISTED: dict[str, Any] = {
    "features": Feature,
    "products": Product,
    "plans": Plan,
    "addons": Addon,
    "coupons": Coupon,
}
_ENTITY = {
    "features": "feature",
    "products": "product",
    "plans": "plan",
    "addons": "addon",
    "coupons": "coupon",
}


class ListPage(msgspec.Struct, kw_only=True):
    rows: Sequence[Any]
    has_more: bool
    next_cursor: str | None
    search: str
    status: str


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_catalog(
    session: AsyncSession,
    env: EnvironmentRef,
    kind: str,
    *,
    search: str | None,
    status: str | None,
    after: str | None,
) -> ListPage:
    model = LISTED[kind]
    query = select(model).where(model.environment_pk == env.pk)
    if kind in ("plans", "addons"):
        query = query.options(joinedload(model.product))
    if search:
        pattern = _like(search.strip())
        query = query.where(model.ref.ilike(pattern, escape="\\") | model.name.ilike(pattern, escape="\\"))
    allowed = {m.value for m in model.status.type.enum_class} if status else set()
    if status in allowed:  # an unknown status in the address shows everything rather than failing
        query = query.where(model.status == status)
    rows, more = await paginate(
        session,
        query,
        model,
        environment_pk=env.pk,
        limit=PAGE_SIZE,
        starting_after=after,
        entity=_ENTITY[kind],
    )
    return ListPage(
        rows=rows,
        has_more=more,
        next_cursor=rows[-1].ref if more else None,
        search=search or "",
        status=status or "",
    )


async def choices(session: AsyncSession, env: EnvironmentRef, kind: str) -> list[tuple[str, str]]:
    """(id, name) of the entities a form may point at, for its select boxes."""
    model = LISTED[kind]
    rows = await session.execute(
        select(model.ref, model.name).where(model.environment_pk == env.pk).order_by(model.name)
    )
    return [(r.ref, r.name) for r in rows]


async def sellable(session: AsyncSession, env: EnvironmentRef, kind: str) -> list[tuple[str, str]]:
    """Published plans or add-ons as (id, "Product · Name"): what a subscription may be made of."""
    model = LISTED[kind]
    rows = await session.execute(
        select(model.ref, model.name, Product.name.label("product"))
        .join(Product, Product.pk == model.product_pk)
        .where(model.environment_pk == env.pk, model.status == "PUBLISHED")
        .order_by(Product.name, model.display_order, model.name)
    )
    return [(r.ref, f"{r.product} · {r.name}") for r in rows]


async def dashboard_counts(session: AsyncSession, env: EnvironmentRef) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, model in {**LISTED, "customers": Customer, "subscriptions": Subscription}.items():
        counts[kind] = int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.environment_pk == env.pk)
            )
            or 0
        )
    return counts
