"""/api/v1/customers controllers."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.catalog import Limit, StartingAfter
from app.core.pagination import DEFAULT_LIMIT, Page
from app.customers import service
from app.customers.schemas import CustomerOut, CustomerUpdate, CustomerUpsert, TokenOut, TokenRequest
from app.environments.service import EnvironmentRef


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]

    @post("/")
    async def upsert(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: CustomerUpsert
    ) -> Response[CustomerOut]:
        customer, created = await service.upsert_customer(db_session, environment, data)
        return Response(customer, status_code=201 if created else 200)

    @get("/")
    async def list_(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        limit: Limit = DEFAULT_LIMIT,
        starting_after: StartingAfter = None,
        search: Annotated[str | None, Parameter(query="search", max_length=200)] = None,
    ) -> Page[CustomerOut]:
        return await service.list_customers(
            db_session, environment, limit=limit, starting_after=starting_after, search=search
        )

    @get("/{customer_id:str}")
    async def get_(
        self, db_session: AsyncSession, environment: EnvironmentRef, customer_id: str
    ) -> CustomerOut:
        return await service.get_customer(db_session, environment, customer_id)

    @patch("/{customer_id:str}")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, customer_id: str, data: CustomerUpdate
    ) -> CustomerOut:
        return await service.update_customer(db_session, environment, customer_id, data)

    @post("/{customer_id:str}/token", status_code=201)
    async def token(
        self,
        db_session: AsyncSession,
        environment: EnvironmentRef,
        customer_id: str,
        data: TokenRequest | None = None,
    ) -> TokenOut:
        expires_in = data.expires_in if data else TokenRequest().expires_in
        return await service.mint_customer_token(db_session, environment, customer_id, expires_in)


CUSTOMER_CONTROLLERS = [CustomerController]
