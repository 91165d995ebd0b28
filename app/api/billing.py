"""Billing endpoints end customers reach through the host (Checkout status, Billing Portal),
and the browser-facing returns from Stripe's pages (outside /api)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, Router, get, post
from litestar.params import Parameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import checkout, oauth, portal
from app.billing.schemas import CheckoutStatusOut, PortalOut, PortalRequest
from app.environments.service import EnvironmentRef
from app.settings import Settings


class CheckoutStatusController(Controller):
    path = "/subscriptions/{subscription_id:str}/checkout-status"
    tags = ["subscriptions"]

    @get("/")
    async def status(
        self, db_session: AsyncSession, settings: Settings, environment: EnvironmentRef, subscription_id: str
    ) -> CheckoutStatusOut:
        return await checkout.checkout_status(db_session, settings, environment, subscription_id)


class BillingPortalController(Controller):
    path = "/customers/{customer_id:str}/billing-portal"
    tags = ["customers"]

    @post("/", status_code=201)
    async def create(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        customer_id: str,
        data: PortalRequest,
    ) -> PortalOut:
        return await portal.create_portal_session(db_session, settings, environment, customer_id, data)


BILLING_CONTROLLERS = [CheckoutStatusController, BillingPortalController]


# --- browser-facing (no API key: the signed state / unguessable token is the credential) ----


def _plain(status: int, text: str) -> Response[str]:
    return Response(text, status_code=status, media_type="text/plain")


@get("/checkout/return/{token:str}/{outcome:str}", include_in_schema=False)
async def checkout_return(db_session: AsyncSession, settings: Settings, token: str, outcome: str) -> Any:
    location = await checkout.return_location(db_session, settings, token, outcome)
    if location is None:
        return _plain(404, "This Checkout link is not valid.")
    return Redirect(location, status_code=303)


@get(oauth.CALLBACK_PATH, include_in_schema=False)
async def oauth_callback(
    db_session: AsyncSession,
    settings: Settings,
    code: Annotated[str | None, Parameter(query="code", max_length=500)] = None,
    state_token: Annotated[str | None, Parameter(query="state", max_length=4000)] = None,
    error: Annotated[str | None, Parameter(query="error", max_length=200)] = None,
) -> Any:
    location = await oauth.callback(db_session, settings, state_token=state_token, code=code, error=error)
    if location is None:
        return _plain(400, "This Stripe connection link has expired or is not valid; start again.")
    return Redirect(location, status_code=303)


billing_public_router = Router(path="/", route_handlers=[checkout_return, oauth_callback])
