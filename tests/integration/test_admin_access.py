"""The console's access rules without a browser: sign-in, sessions, CSRF, rate limit, fragments."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.admin import auth
from app.admin.auth import TooManyAttempts, add_operator, create_operator, ensure_bootstrap_operator
from app.admin.auth import sign_in as check_credentials
from app.admin.context import safe_next
from app.admin.models import Operator
from app.admin.security import csrf_config, session_config
from app.core.errors import InvalidRequest, Unauthorized
from app.core.links import entity_url
from app.db import Database
from app.migrate import upgrade_to_head
from app.settings import Settings
from tests.conftest import ApiEnv

PASSWORD = "correct horse battery"
TOKEN_RE = re.compile(r'name="_csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with small costs: the machine is shared and the real cost is not under test."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def admin_client(client: AsyncTestClient[Litestar]) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The suite's client with an empty cookie jar (the console is all about cookies)."""
    client.cookies.clear()
    yield client
    client.cookies.clear()


@pytest.fixture
async def operator_email(database: Database) -> str:
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    async with database.session() as session:
        await add_operator(session, email, PASSWORD)
    return email


async def csrf_from(client: AsyncTestClient[Litestar], path: str = "/admin/login") -> str:
    page = await client.get(path)
    match = TOKEN_RE.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


async def sign_in(
    client: AsyncTestClient[Litestar], email: str, password: str = PASSWORD, next_url: str = ""
) -> httpx.Response:
    token = await csrf_from(client)
    return await client.post(
        "/admin/login",
        data={"email": email, "password": password, "next": next_url, "_csrf_token": token},
        follow_redirects=False,
    )


async def test_unknown_console_pages_need_sign_in_too(admin_client: AsyncTestClient[Litestar]) -> None:
    response = await admin_client.get("/admin/subscriptions/sub_1?env=prod", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=%2Fadmin%2Fsubscriptions%2Fsub_1%3Fenv%3Dprod"


async def test_pages_redirect_to_login_and_back(
    admin_client: AsyncTestClient[Litestar], operator_email: str, api: ApiEnv
) -> None:
    deep = f"/admin/plans/basic?env={api.created.environment_id}"
    response = await admin_client.get(deep, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")
    signed = await sign_in(admin_client, operator_email, next_url=deep)
    assert signed.status_code == 303 and signed.headers["location"] == deep
    cookie = signed.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("tollgate_admin="))
    assert (
        "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie and "Path=/admin" in session_cookie
    )
    assert "Secure" not in session_cookie  # public_url is http in the tests
    page = await admin_client.get(deep)
    assert page.status_code == 404 and "No plan" in page.text  # signed in: the plan page itself answers
    assert page.headers["content-type"].startswith("text/html")
    unknown = await admin_client.get("/admin/subscriptions/sub_1")
    assert unknown.status_code == 404 and "No subscription with id" in unknown.text
    nowhere = await admin_client.get("/admin/nowhere/1")
    assert nowhere.status_code == 404 and "nothing at this address" in nowhere.text
    assert page.headers["content-type"].startswith("text/html")


async def test_wrong_password_refused(admin_client: AsyncTestClient[Litestar], operator_email: str) -> None:
    response = await sign_in(admin_client, operator_email, "wrong password!")
    assert response.status_code == 401
    assert "not right" in response.text
    assert (await admin_client.get("/admin", follow_redirects=False)).status_code == 303


async def test_login_rate_limited_per_email_and_address(
    admin_client: AsyncTestClient[Litestar], operator_email: str
) -> None:
    for _ in range(5):
        assert (await sign_in(admin_client, operator_email, "wrong password!")).status_code == 401
    limited = await sign_in(admin_client, operator_email)  # even the right password waits now
    assert limited.status_code == 429 and limited.headers["retry-after"] == "900"
    assert "Too many" in limited.text
    assert (await admin_client.get("/admin", follow_redirects=False)).status_code == 303


async def test_post_without_csrf_token_is_refused(
    admin_client: AsyncTestClient[Litestar], operator_email: str, api: ApiEnv
) -> None:
    no_token = await admin_client.post("/admin/login", data={"email": operator_email, "password": PASSWORD})
    assert no_token.status_code == 403
    assert (await sign_in(admin_client, operator_email)).status_code == 303
    env = api.created.environment_id
    token = await csrf_from(admin_client, f"/admin/features/_new?env={env}")
    form = {"id": "sso", "name": "SSO", "featureType": "BOOLEAN"}
    refused = await admin_client.post(f"/admin/features/_new?env={env}", data=form)
    assert refused.status_code == 403 and "security token" in refused.text
    wrong = await admin_client.post(
        f"/admin/features/_new?env={env}", data={**form, "_csrf_token": "x" * 128}
    )
    assert wrong.status_code == 403
    assert (await api.get("/features/sso")).status_code == 404, "a refused POST changes nothing"
    header = await admin_client.post(
        f"/admin/features/_new?env={env}", data=form, headers={"X-CSRFToken": token}, follow_redirects=False
    )
    assert header.status_code == 303
    assert (await api.get("/features/sso")).status_code == 200


async def test_api_is_not_under_csrf_or_sessions(api: ApiEnv) -> None:
    created = await api.post("/products", {"id": "p1", "name": "P1"})
    assert created.status_code == 201
    assert "set-cookie" not in created.headers


async def test_htmx_gets_fragments_and_vary(
    admin_client: AsyncTestClient[Litestar], operator_email: str, api: ApiEnv
) -> None:
    await sign_in(admin_client, operator_email)
    env = api.created.environment_id
    full = await admin_client.get(f"/admin/features?env={env}")
    assert full.status_code == 200 and "<html" in full.text and 'id="results"' in full.text
    assert "HX-Request" in full.headers["vary"]
    assert "script-src 'self'" in full.headers["content-security-policy"]
    main = await admin_client.get(
        f"/admin/features?env={env}", headers={"HX-Request": "true", "HX-Target": "main"}
    )
    assert "<html" not in main.text and 'hx-swap-oob="true"' in main.text and "<title>" in main.text
    results = await admin_client.get(
        f"/admin/features?env={env}&q=zzz", headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert results.text.lstrip().startswith('<div id="results">') and "Nothing matches" in results.text
    unsigned = await admin_client.post(
        "/admin/logout", headers={"X-CSRFToken": await csrf_from(admin_client, f"/admin?env={env}")}
    )
    assert unsigned.status_code in (200, 303)
    expired = await admin_client.get(
        f"/admin/features?env={env}", headers={"HX-Request": "true", "HX-Target": "main"}
    )
    assert expired.status_code == 401 and expired.headers["hx-redirect"].startswith("/admin/login")


def test_entity_urls() -> None:
    assert (
        entity_url("https://t.example/", "plan", "pro", "prod")
        == "https://t.example/admin/plans/pro?env=prod"
    )
    assert (
        entity_url("https://t.example", "customer", "a|b c") == "https://t.example/admin/customers/a%7Cb%20c"
    )


def test_next_only_inside_the_console() -> None:
    assert safe_next("/admin/plans/x?env=a") == "/admin/plans/x?env=a"
    assert safe_next("/admin?env=a") == "/admin?env=a"
    for bad in (
        "/administrator",
        "//evil.example",
        "https://evil.example/admin",
        "/admin\\@evil",
        "/other",
        None,
        "/admin\r\nX: y",
    ):
        assert safe_next(bad) == "/admin"


def test_cookies_are_secure_behind_https(settings: Settings) -> None:
    https = Settings(
        database_url=settings.database_url, secret=settings.secret, public_url="https://billing.example"
    )
    assert session_config(https).secure and csrf_config(https).cookie_secure
    assert not session_config(settings).secure
    assert session_config(https).secret != csrf_config(https).secret.encode()


async def test_bootstrap_operator_only_once(tmp_path: Path, settings: Settings) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'bootstrap.db'}")
    try:
        await upgrade_to_head(database)
        boot = Settings(
            database_url=database.url,
            secret=settings.secret,
            admin_email="Boss@Example.com",
            admin_password="bootstrap-password",
        )
        assert await ensure_bootstrap_operator(database, boot) is True
        changed = Settings(
            database_url=database.url,
            secret=settings.secret,
            admin_email="other@example.com",
            admin_password="x" * 12,
        )
        assert await ensure_bootstrap_operator(database, changed) is False, (
            "only the very first start creates one"
        )
        async with database.session() as session:
            emails = (await session.scalars(select(Operator.email))).all()
            assert emails == ["boss@example.com"]
            operator = await check_credentials(
                session, "boss@example.com ", "bootstrap-password", "127.0.0.1"
            )
            assert operator.last_login_at is not None
        with pytest.raises(InvalidRequest):
            await create_operator(database, "short@example.com", "short")
        assert (await create_operator(database, "second@example.com", "a good password")).pk > 0
    finally:
        await database.dispose()


async def test_rate_limit_counts_per_address(database: Database, operator_email: str) -> None:
    async with database.session() as session:
        for _ in range(5):
            with pytest.raises(Unauthorized):
                await check_credentials(session, operator_email, "wrong password!", "10.0.0.1")
        with pytest.raises(TooManyAttempts):
            await check_credentials(session, operator_email, PASSWORD, "10.0.0.1")
        # Another address is not locked out by someone else's guesses.
        assert (
            await check_credentials(session, operator_email, PASSWORD, "10.0.0.2")
        ).email == operator_email
