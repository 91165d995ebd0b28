"""Catalog rows and customers for subscription tests, inserted directly as ORM rows.

The catalog and customer APIs are built elsewhere; until tests switch to them, this helper
writes the few rows a subscription test needs into the test's own environment.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from app.catalog.models import (
    Addon,
    BillingModel,
    BillingPeriod,
    Charge,
    Coupon,
    DiscountDuration,
    Entitlement,
    Feature,
    FeatureType,
    MeterType,
    Plan,
    PlanStatus,
    PriceVersion,
    PricingType,
    Product,
    ResetPeriod,
    TiersMode,
    TrialEndBehavior,
    plan_addons,
)
from app.customers.models import Customer
from app.db import Database
from app.environments.models import Environment
from tests.conftest import ApiEnv


def flat(amount: int, period: str = "MONTHLY", currency: str = "usd") -> dict[str, Any]:
    return {"model": "FLAT_FEE", "amount": amount, "period": period, "currency": currency}


def per_unit(
    amount: int, feature: str, period: str = "MONTHLY", currency: str = "usd", **bounds: int
) -> dict[str, Any]:
    return {
        "model": "PER_UNIT",
        "amount": amount,
        "feature": feature,
        "period": period,
        "currency": currency,
        **bounds,
    }


class CatalogFactory:
    def __init__(self, database: Database, api: ApiEnv) -> None:
        self.database = database
        self.api = api
        self._env_pk: int | None = None

    async def env_pk(self) -> int:
        if self._env_pk is None:
            async with self.database.session() as session:
                self._env_pk = await session.scalar(
                    select(Environment.pk).where(Environment.slug == self.api.created.environment_id)
                )
        assert self._env_pk is not None
        return self._env_pk

    async def _pk(self, model: Any, ref: str) -> int:
        async with self.database.session() as session:
            pk = await session.scalar(
                select(model.pk).where(model.environment_pk == await self.env_pk(), model.ref == ref)
            )
        assert pk is not None, ref
        return pk

    async def feature(self, ref: str, kind: str = "BOOLEAN", meter: str | None = None) -> int:
        if kind == "METERED" and meter is None:
            meter = "INCREMENTAL"
        async with self.database.session() as session:
            row = Feature(
                environment_pk=await self.env_pk(),
                ref=ref,
                name=ref.title(),
                feature_type=FeatureType(kind),
                meter_type=MeterType(meter) if meter else None,
            )
            session.add(row)
            await session.flush()
            return row.pk

    async def product(self, ref: str = "app") -> int:
        async with self.database.session() as session:
            row = Product(environment_pk=await self.env_pk(), ref=ref, name=ref.title())
            session.add(row)
            await session.flush()
            return row.pk

    async def _entitlements(
        self, session: Any, owner: dict[str, int], grants: dict[str, dict[str, Any]]
    ) -> None:
        for feature_ref, spec in grants.items():
            session.add(
                Entitlement(
                    **owner,
                    feature_pk=await self._feature_pk(session, feature_ref),
                    usage_limit=spec.get("limit"),
                    unlimited=spec.get("unlimited", False),
                    soft_limit=spec.get("soft", False),
                    reset_period=ResetPeriod(spec["reset"]) if spec.get("reset") else None,
                )
            )

    async def _feature_pk(self, session: Any, ref: str) -> int:
        pk = await session.scalar(
            select(Feature.pk).where(Feature.environment_pk == await self.env_pk(), Feature.ref == ref)
        )
        assert pk is not None, ref
        return pk

    async def _prices(
        self, session: Any, owner: dict[str, int], charges: list[dict[str, Any]], version: int
    ) -> None:
        pv = PriceVersion(environment_pk=await self.env_pk(), version=version, **owner)
        session.add(pv)
        await session.flush()
        for spec in charges:
            session.add(
                Charge(
                    price_version_pk=pv.pk,
                    billing_period=BillingPeriod(spec.get("period", "MONTHLY")),
                    currency=spec.get("currency", "usd"),
                    billing_model=BillingModel(spec["model"]),
                    amount=spec.get("amount"),
                    feature_pk=await self._feature_pk(session, spec["feature"])
                    if spec.get("feature")
                    else None,
                    tiers_mode=TiersMode(spec["mode"]) if spec.get("mode") else None,
                    tiers=spec.get("tiers"),
                    min_quantity=spec.get("min"),
                    max_quantity=spec.get("max"),
                )
            )

    async def plan(
        self,
        ref: str,
        product: str = "app",
        *,
        pricing: str = "PAID",
        status: str = "PUBLISHED",
        parent: str | None = None,
        trial_days: int | None = None,
        trial_end_behavior: str = "CONVERT_TO_PAID",
        display_order: int = 0,
        entitlements: dict[str, dict[str, Any]] | None = None,
        charges: list[dict[str, Any]] | None = None,
        addons: list[str] = (),  # type: ignore[assignment]
    ) -> int:
        async with self.database.session() as session:
            env_pk = await self.env_pk()
            row = Plan(
                environment_pk=env_pk,
                ref=ref,
                product_pk=await session.scalar(
                    select(Product.pk).where(Product.environment_pk == env_pk, Product.ref == product)
                ),
                name=ref.title(),
                pricing_type=PricingType(pricing),
                status=PlanStatus(status),
                display_order=display_order,
                parent_plan_pk=await session.scalar(
                    select(Plan.pk).where(Plan.environment_pk == env_pk, Plan.ref == parent)
                )
                if parent
                else None,
                trial_days=trial_days,
                trial_end_behavior=TrialEndBehavior(trial_end_behavior),
            )
            session.add(row)
            await session.flush()
            await self._entitlements(session, {"plan_pk": row.pk}, entitlements or {})
            if charges is not None:
                await self._prices(session, {"plan_pk": row.pk}, charges, 1)
            for addon_ref in addons:
                addon_pk = await session.scalar(
                    select(Addon.pk).where(Addon.environment_pk == env_pk, Addon.ref == addon_ref)
                )
                await session.execute(insert(plan_addons).values(plan_pk=row.pk, addon_pk=addon_pk))
            return row.pk

    async def price_version(self, plan: str, charges: list[dict[str, Any]], version: int) -> None:
        """A newer price version for an existing plan."""
        plan_pk = await self._pk(Plan, plan)
        async with self.database.session() as session:
            await self._prices(session, {"plan_pk": plan_pk}, charges, version)

    async def addon(
        self,
        ref: str,
        product: str = "app",
        *,
        max_quantity: int | None = None,
        entitlements: dict[str, dict[str, Any]] | None = None,
        charges: list[dict[str, Any]] | None = None,
        pricing: str = "PAID",
    ) -> int:
        async with self.database.session() as session:
            env_pk = await self.env_pk()
            row = Addon(
                environment_pk=env_pk,
                ref=ref,
                product_pk=await session.scalar(
                    select(Product.pk).where(Product.environment_pk == env_pk, Product.ref == product)
                ),
                name=ref.title(),
                pricing_type=PricingType(pricing),
                status=PlanStatus.PUBLISHED,
                max_quantity=max_quantity,
            )
            session.add(row)
            await session.flush()
            await self._entitlements(session, {"addon_pk": row.pk}, entitlements or {})
            if charges is not None:
                await self._prices(session, {"addon_pk": row.pk}, charges, 1)
            return row.pk

    async def coupon(
        self,
        ref: str,
        *,
        percent_off_bp: int | None = None,
        amount_off: int | None = None,
        currency: str | None = None,
        duration: str = "FOREVER",
        months: int | None = None,
    ) -> int:
        async with self.database.session() as session:
            row = Coupon(
                environment_pk=await self.env_pk(),
                ref=ref,
                name=ref.title(),
                percent_off_bp=percent_off_bp,
                amount_off=amount_off,
                currency=currency,
                duration=DiscountDuration(duration),
                duration_in_months=months,
            )
            session.add(row)
            await session.flush()
            return row.pk

    async def customer(self, ref: str, *, currency: str | None = None) -> int:
        async with self.database.session() as session:
            row = Customer(environment_pk=await self.env_pk(), ref=ref, currency=currency)
            session.add(row)
            await session.flush()
            return row.pk
