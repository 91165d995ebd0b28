"""/api/v1 catalog controllers: parse, call one service function, return its Struct."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog import schemas as s
from app.catalog import service
from app.core.pagination import DEFAULT_LIMIT, Page
from app.environments.service import EnvironmentRef

Limit = Annotated[int, Parameter(query="limit", ge=1, le=100)]
StartingAfter = Annotated[str | None, Parameter(query="startingAfter", max_length=200)]
Status = Annotated[str | None, Parameter(query="status", max_length=32)]
ProductFilter = Annotated[str | None, Parameter(query="productId", max_length=100)]


def list_query(
    limit: int, starting_after: str | None, status: str | None, product_id: str | None = None
) -> s.ListQuery:
    return s.ListQuery(limit=limit, starting_after=starting_after, status=status, product_id=product_id)


class FeatureController(Controller):
    path = "/features"
    tags = ["features"]

    @post("/")
    async def create(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: s.FeatureCreate
    ) -> s.FeatureOut:
        return await service.create_feature(db_session, environment, data)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        status: Status = None,
    ) -> Page[s.FeatureOut]:
        return await service.list_features(db_session, environment, list_query(limit, starting_after, status))

    @get("/{feature_id:str}")
    async def get_(
        self, db_session: AsyncSession, environment: EnvironmentRef, feature_id: str
    ) -> s.FeatureOut:
        return await service.get_feature(db_session, environment, feature_id)

    @patch("/{feature_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, feature_id: str, data: s.FeatureUpdate
    ) -> s.FeatureOut:
        return await service.update_feature(db_session, environment, feature_id, data)

    @post("/{feature_id:str}/archive", status_code=200)
    async def archive(
        self, db_session: AsyncSession, environment: EnvironmentRef, feature_id: str
    ) -> s.FeatureOut:
        return await service.archive_feature(db_session, environment, feature_id)


class ProductController(Controller):
    path = "/products"
    tags = ["products"]

    @post("/")
    async def create(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: s.ProductCreate
    ) -> s.ProductOut:
        return await service.create_product(db_session, environment, data)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        status: Status = None,
    ) -> Page[s.ProductOut]:
        return await service.list_products(db_session, environment, list_query(limit, starting_after, status))

    @get("/{product_id:str}")
    async def get_(
        self, db_session: AsyncSession, environment: EnvironmentRef, product_id: str
    ) -> s.ProductOut:
        return await service.get_product(db_session, environment, product_id)

    @patch("/{product_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, product_id: str, data: s.ProductUpdate
    ) -> s.ProductOut:
        return await service.update_product(db_session, environment, product_id, data)

    @post("/{product_id:str}/archive", status_code=200)
    async def archive(
        self, db_session: AsyncSession, environment: EnvironmentRef, product_id: str
    ) -> s.ProductOut:
        return await service.archive_product(db_session, environment, product_id)


class PlanController(Controller):
    path = "/plans"
    tags = ["plans"]

    @post("/")
    async def create(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: s.PlanCreate
    ) -> s.PlanOut:
        return await service.create_plan(db_session, environment, data)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        status: Status = None,
        product_id: ProductFilter = None,
    ) -> Page[s.PlanOut]:
        return await service.list_plans(
            db_session, environment, list_query(limit, starting_after, status, product_id)
        )

    @get("/{plan_id:str}")
    async def get_(self, db_session: AsyncSession, environment: EnvironmentRef, plan_id: str) -> s.PlanOut:
        return await service.get_plan(db_session, environment, plan_id)

    @get("/{plan_id:str}/price-versions")
    async def price_versions(
        self, db_session: AsyncSession, environment: EnvironmentRef, plan_id: str
    ) -> list[s.PriceVersionOut]:
        return await service.list_plan_price_versions(db_session, environment, plan_id)

    @patch("/{plan_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, plan_id: str, data: s.PlanUpdate
    ) -> s.PlanOut:
        return await service.update_plan(db_session, environment, plan_id, data)

    @post("/{plan_id:str}/publish", status_code=200)
    async def publish(self, db_session: AsyncSession, environment: EnvironmentRef, plan_id: str) -> s.PlanOut:
        return await service.publish_plan(db_session, environment, plan_id)

    @post("/{plan_id:str}/archive", status_code=200)
    async def archive(self, db_session: AsyncSession, environment: EnvironmentRef, plan_id: str) -> s.PlanOut:
        return await service.archive_plan(db_session, environment, plan_id)


class AddonController(Controller):
    path = "/addons"
    tags = ["addons"]

    @post("/")
    async def create(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: s.AddonCreate
    ) -> s.AddonOut:
        return await service.create_addon(db_session, environment, data)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        status: Status = None,
        product_id: ProductFilter = None,
    ) -> Page[s.AddonOut]:
        return await service.list_addons(
            db_session, environment, list_query(limit, starting_after, status, product_id)
        )

    @get("/{addon_id:str}")
    async def get_(self, db_session: AsyncSession, environment: EnvironmentRef, addon_id: str) -> s.AddonOut:
        return await service.get_addon(db_session, environment, addon_id)

    @patch("/{addon_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, addon_id: str, data: s.AddonUpdate
    ) -> s.AddonOut:
        return await service.update_addon(db_session, environment, addon_id, data)

    @post("/{addon_id:str}/publish", status_code=200)
    async def publish(
        self, db_session: AsyncSession, environment: EnvironmentRef, addon_id: str
    ) -> s.AddonOut:
        return await service.publish_addon(db_session, environment, addon_id)

    @post("/{addon_id:str}/archive", status_code=200)
    async def archive(
        self, db_session: AsyncSession, environment: EnvironmentRef, addon_id: str
    ) -> s.AddonOut:
        return await service.archive_addon(db_session, environment, addon_id)


class CouponController(Controller):
    path = "/coupons"
    tags = ["coupons"]

    @post("/")
    async def create(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: s.CouponCreate
    ) -> s.CouponOut:
        return await service.create_coupon(db_session, environment, data)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        status: Status = None,
    ) -> Page[s.CouponOut]:
        return await service.list_coupons(db_session, environment, list_query(limit, starting_after, status))

    @get("/{coupon_id:str}")
    async def get_(
        self, db_session: AsyncSession, environment: EnvironmentRef, coupon_id: str
    ) -> s.CouponOut:
        return await service.get_coupon(db_session, environment, coupon_id)

    @patch("/{coupon_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, coupon_id: str, data: s.CouponUpdate
    ) -> s.CouponOut:
        return await service.update_coupon(db_session, environment, coupon_id, data)

    @post("/{coupon_id:str}/archive", status_code=200)
    async def archive(
        self, db_session: AsyncSession, environment: EnvironmentRef, coupon_id: str
    ) -> s.CouponOut:
        return await service.archive_coupon(db_session, environment, coupon_id)


CATALOG_CONTROLLERS = [
    FeatureController,
    ProductController,
    PlanController,
    AddonController,
    CouponController,
]
