"""/demo on an empty instance, with an environment only, and with a customer."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.customers.schemas import CustomerUpsert
from app.customers.service import upsert_customer
from app.db import Database
from app.environments.models import Environment
from app.environments.service import EnvironmentRef, create_environment
from app.main import create_app
from app.migrate import upgrade_to_head
from app.settings import Settings


async def test_demo_pages_explain_what_is_missing_then_embed_the_widgets(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    database = Database(url)
    await upgrade_to_head(database)
    settings = Settings(database_url=url, secret="s" * 40, embedded_worker=False, embedded_sandbox=False)
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        empty = await client.get("/demo")
        assert empty.status_code == 200 and "There is no environment yet" in empty.text
        assert "script-src 'self'" in empty.headers["content-security-policy"]
        async with database.session() as session:
            created = await create_environment(session, "demo")
        no_customer = await client.get("/demo")
        assert "has no customer yet" in no_customer.text and "<tollgate-" not in no_customer.text
        async with database.session() as session:
            env = await session.scalar(select(Environment).where(Environment.slug == "demo"))
            assert env is not None
            await upsert_customer(
                session, EnvironmentRef(env.pk, env.slug), CustomerUpsert(id="ada", name="Ada")
            )
        for path in ("/demo", "/demo/react"):
            page = await client.get(path)
            assert page.status_code == 200
            assert created.publishable_key in page.text and created.server_key not in page.text
            assert 'customer-id="ada"' in page.text or 'data-customer-id="ada"' in page.text
            assert '<script src="/static/tollgate.js" async>' in page.text or "demo-react.js" in page.text
        asset = await client.get("/demo/assets/tollgate-react-core.js")
        assert asset.status_code == 200 and "createComponents" in asset.text
        assert asset.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/demo/assets/..%2Fsettings.py")).status_code == 404
    await database.dispose()
