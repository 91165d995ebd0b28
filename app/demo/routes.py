"""/demo and /demo/react: a pretend SaaS app embedding the widgets, as a host app would.

The demo environment is the first environment and the demo customer its first customer; the
page's server side mints that customer's token, exactly what a real host backend does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Response, Router, get
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.service import mint_customer_token
from app.environments.service import EnvironmentRef
from app.settings import PROJECT_ROOT
from app.widgets import queries

WIDGETS_PACKAGE = PROJECT_ROOT / "widgets"
# The demo serves the client package's browser-ready modules as they are: no build step.
ASSETS = {
    "tollgate-react-core.js": WIDGETS_PACKAGE / "react" / "core.js",
    "tollgate-loader.js": WIDGETS_PACKAGE / "index.js",
}
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
TOKEN_SECONDS = 3600


async def _demo_context(db_session: AsyncSession) -> dict[str, Any]:
    found = await queries.first_environment_with_customer(db_session)
    if found is None:
        return {
            "problem": "There is no environment yet: create one (see the README), then a customer, and reload."
        }
    env, customer = found
    context: dict[str, Any] = {"environment_name": env.name, "publishable_key": env.publishable_key}
    if customer is None:
        context["problem"] = (
            f"Environment '{env.name}' has no customer yet. Create one through the API "
            "(POST /api/v1/customers) to see the customer portal."
        )
        return context
    token = await mint_customer_token(
        db_session, EnvironmentRef(pk=env.pk, slug=env.slug), customer.ref, TOKEN_SECONDS
    )
    context |= {
        "customer_id": customer.ref,
        "customer_name": customer.name or customer.ref,
        "token": token.token,
    }
    return context


def _page(template: str, context: dict[str, Any]) -> Template:
    return Template(
        template,
        context=context,
        headers={
            "Content-Security-Policy": DEMO_CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


@get("/", name="demo.index")
async def demo_page(db_session: AsyncSession) -> Template:
    return _page("demo/index.html", await _demo_context(db_session))


@get("/react", name="demo.react")
async def demo_react_page(db_session: AsyncSession) -> Template:
    return _page("demo/react.html", await _demo_context(db_session))


@get("/assets/{name:str}", name="demo.asset", sync_to_thread=False)
def demo_asset(name: str) -> Response[bytes]:
    path: Path | None = ASSETS.get(name)
    if path is None:
        return Response(b"", status_code=404)
    return Response(path.read_bytes(), media_type="text/javascript; charset=utf-8")


demo_router = Router(
    path="/demo", route_handlers=[demo_page, demo_react_page, demo_asset], include_in_schema=False
)
