"""Console screens through the test client: forms call the services, errors land on their fields."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from app.admin import auth
from app.admin.auth import add_operator, hash_password
from app.admin.forms import to_major_units, to_minor_units
from app.admin.models import Operator
from app.db import Database
from tests.conftest import ApiEnv

PASSWORD = "screens password 123"
TOKEN_RE = re.compile(r'name="_csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with small costs: the machine is shared and the real cost is not under test."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


class Console:
    """A signed-in operator's browser, minus the browser."""

    def __init__(self, client: AsyncTestClient[Litestar], env: str, email: str) -> None:
        self.client = client
        self.email = email
        self.env = env
        self.token = ""

    async def get(self, path: str, **kwargs: Any) -> Any:
        sep = "&" if "?" in path else "?"
        response = await self.client.get(f"{path}{sep}env={self.env}", **kwargs)
        if match := TOKEN_RE.search(response.text):
            self.token = match.group(1)
        return response

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], **kwargs: Any) -> Any:
        items = list(data.items()) if isinstance(data, dict) else list(data)
        sep = "&" if "?" in path else "?"
        return await self.client.post(
            f"{path}{sep}env={self.env}",
            content="&".join(f"{_q(k)}={_q(v)}" for k, v in [*items, ("_csrf_token", self.token)]),
            headers={"Content-Type": "application/x-www-form-urlencoded", **kwargs.pop("headers", {})},
            follow_redirects=False,
            **kwargs,
        )


def _q(value: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(str(value))


async def open_console(client: AsyncTestClient[Litestar], database: Database, env: str) -> Console:
    """A new operator, signed in on `client` (whose cookies are replaced), looking at `env`."""
    client.cookies.clear()
    email = f"screens-{uuid.uuid4().hex[:8]}@example.com"
    async with database.session() as session:
        await add_operator(session, email, PASSWORD)
    login = await client.get("/admin/login")
    token = TOKEN_RE.search(login.text)
    assert token
    signed = await client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "_csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    console = Console(client, env, email)
    await console.get("/admin")
    return console


@pytest.fixture
async def console(
    client: AsyncTestClient[Litestar], database: Database, api: ApiEnv
) -> AsyncIterator[Console]:
    yield await open_console(client, database, api.created.environment_id)
    client.cookies.clear()


def field_error(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">([^<]*)</p>', html)
    assert match, f"no error for {field_id}"
    return match.group(1)


async def test_feature_create_edit_archive_and_errors(console: Console, api: ApiEnv) -> None:
    await console.get("/admin/features/_new")
    bad = await console.post("/admin/features/_new", {"id": "", "name": "X", "featureType": "BOOLEAN"})
    assert bad.status_code == 422
    assert field_error(bad.text, "f-id") == "This field is required."
    made = await console.post(
        "/admin/features/_new",
        {"id": "seats", "name": "Seats", "featureType": "METERED", "meterType": "FLUCTUATING"},
    )
    assert made.status_code == 303 and made.headers["location"] == f"/admin/features/seats?env={console.env}"
    page = await console.get("/admin/features/seats")
    assert "Feature seats created." in page.text and "Metered · fluctuating" in page.text
    again = await console.post(
        "/admin/features/_new", {"id": "seats", "name": "Seats", "featureType": "BOOLEAN"}
    )
    assert again.status_code == 422 and "exists already" in field_error(again.text, "f-id")
    renamed = await console.post("/admin/features/seats", {"name": "Team seats", "unitSingular": "seat"})
    assert renamed.status_code == 303
    assert (await api.ok("get", "/features/seats"))["name"] == "Team seats"
    blank = await console.post("/admin/features/seats", {"name": ""})
    assert blank.status_code == 422 and field_error(blank.text, "f-name")
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post",
        "/plans",
        {
            "id": "p",
            "productId": "acme",
            "name": "P",
            "pricingType": "FREE",
            "entitlements": [{"featureId": "seats", "usageLimit": 3}],
        },
    )
    in_use = await console.post("/admin/features/seats/archive", {})
    assert in_use.status_code == 303
    refused = await console.get("/admin/features/seats")
    assert 'class="flash flash-error" role="alert">Feature &#39;seats&#39; is granted by 1' in refused.text
    await api.ok("post", "/plans/p/archive", status=200)
    archived = await console.post("/admin/features/seats/archive", {})
    assert archived.status_code == 303
    assert (await api.ok("get", "/features/seats"))["status"] == "ARCHIVED"


async def test_lists_search_and_page_in_sql(console: Console, api: ApiEnv) -> None:
    for i in range(27):
        await api.ok("post", "/products", {"id": f"prod-{i:02d}", "name": f"Product {i}"})
    await api.ok("post", "/products", {"id": "special", "name": "Rocket 100%"})
    first = await console.get("/admin/products")
    assert (
        first.text.count('href="/admin/products/prod-') + first.text.count('href="/admin/products/special')
        == 25
    )
    assert "after=" in first.text
    cursor = re.search(r"after=([\w-]+)", first.text)
    assert cursor
    second = await console.get(f"/admin/products?after={cursor.group(1)}")
    assert second.text.count('href="/admin/products/prod-') == 3 and "after=" not in second.text
    found = await console.get("/admin/products?q=100%")  # a literal %, not a wildcard
    assert "special" in found.text and "prod-01" not in found.text
    by_id = await console.get(
        "/admin/products?q=PROD-1", headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert by_id.text.count('href="/admin/products/prod-1') == 10 and "<html" not in by_id.text
    archived = await console.get("/admin/products?status=ARCHIVED")
    assert "No products" not in archived.text and "Nothing matches" in archived.text


async def test_other_environments_entities_are_not_reachable(console: Console, other_api: ApiEnv) -> None:
    await other_api.ok("post", "/products", {"id": "theirs", "name": "Theirs"})
    mine = await console.get("/admin/products/theirs")
    assert mine.status_code == 404
    unknown = await console.client.get("/admin/products?env=no-such-env")
    assert unknown.status_code == 404 and "no environment" in unknown.text
    # Naming their environment shows it (operators see every environment) and remembers the choice.
    theirs = await console.client.get(f"/admin/products/theirs?env={other_api.created.environment_id}")
    assert theirs.status_code == 200
    remembered = await console.client.get("/admin/products")
    assert "theirs" in remembered.text


async def test_plan_with_charges_entitlements_trial_and_publish(console: Console, api: ApiEnv) -> None:
    await api.ok("post", "/features", {"id": "seats", "name": "Seats", "featureType": "NUMBER"})
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post", "/addons", {"id": "boost", "productId": "acme", "name": "Boost", "pricingType": "FREE"}
    )
    await console.get("/admin/plans/_new")
    form = {
        "id": "team",
        "productId": "acme",
        "name": "Team",
        "pricingType": "PAID",
        "displayOrder": "1",
        "trialDays": "14",
        "trialEndBehavior": "CANCEL_SUBSCRIPTION",
        "compatibleAddonIds": "boost",
        "entitlements[0].featureId": "seats",
        "entitlements[0].usageLimit": "",
        "charges[0].billingPeriod": "MONTHLY",
        "charges[0].currency": "eur",
        "charges[0].billingModel": "PER_UNIT",
        "charges[0].amount": "9.99",
        "charges[0].featureId": "seats",
        "charges[1].billingPeriod": "MONTHLY",
        "charges[1].currency": "USD",
        "charges[1].billingModel": "FLAT_FEE",
        "charges[1].amount": "",
    }
    refused = await console.post("/admin/plans/_new", form)
    assert refused.status_code == 422
    assert "usageLimit" in field_error(refused.text, "f-entitlements-0")
    assert 'value="9.99"' in refused.text, "the form comes back as typed"
    more = await console.post("/admin/plans/_new", {**form, "_add": "charges"})
    assert more.status_code == 200 and 'id="f-charges-2-amount"' in more.text
    form["entitlements[0].usageLimit"] = "5"
    form["charges[0].amount"] = "9.999"
    cents = await console.post("/admin/plans/_new", form)
    assert cents.status_code == 422 and "12.50" in field_error(cents.text, "f-charges-0-amount")
    form["charges[0].amount"] = "9.99"
    created = await console.post("/admin/plans/_new", form)
    assert created.status_code == 303, created.text
    plan = await api.ok("get", "/plans/team")
    assert plan["defaultTrial"] == {"durationDays": 14, "trialEndBehavior": "CANCEL_SUBSCRIPTION"}
    assert plan["charges"][0]["amount"] == 999 and plan["compatibleAddonIds"] == ["boost"]
    published = await console.post("/admin/plans/team/publish", {}, headers={"HX-Request": "true"})
    assert published.status_code == 200 and "/admin/plans/team" in published.headers["hx-location"]
    page = await console.get("/admin/plans/team")
    assert "Plan published." in page.text and "Published" in page.text
    assert re.search(r"<td>v1 <span[^>]*>current</span></td>\s*<td>.*?</td>\s*<td>0</td>", page.text, re.S)
    archive = await console.post("/admin/plans/team/archive", {})
    assert archive.status_code == 303
    assert (await api.ok("get", "/plans/team"))["status"] == "ARCHIVED"


async def test_tiered_price_from_the_tiers_box(console: Console, api: ApiEnv) -> None:
    await api.ok("post", "/features", {"id": "seats", "name": "Seats", "featureType": "NUMBER"})
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await console.get("/admin/plans/_new")
    form = {
        "id": "tiers", "productId": "acme", "name": "Tiers", "pricingType": "PAID", "displayOrder": "0",
        "charges[0].billingPeriod": "MONTHLY", "charges[0].currency": "usd", "charges[0].billingModel": "TIERED",
        "charges[0].featureId": "seats", "charges[0].tiersMode": "GRADUATED",
        "charges[0].tiers": "10, 5, 0\nten, 4, 0",
    }  # fmt: skip
    refused = await console.post("/admin/plans/_new", form)
    assert refused.status_code == 422 and "up to, unit price" in field_error(
        refused.text, "f-charges-0-tiers"
    )
    form["charges[0].tiers"] = "10, 5, 0\n\n, 4.50, 1"
    assert (await console.post("/admin/plans/_new", form)).status_code == 303
    charge = (await api.ok("get", "/plans/tiers"))["charges"][0]
    assert charge["tiers"] == [
        {"upTo": 10, "unitAmount": 500, "flatAmount": 0},
        {"upTo": None, "unitAmount": 450, "flatAmount": 100},
    ]
    page = await console.get("/admin/plans/tiers")
    assert "10, 5.00, 0.00\n, 4.50, 1.00</textarea>" in page.text


async def test_refused_update_is_rolled_back(console: Console, api: ApiEnv) -> None:
    await api.ok("post", "/features", {"id": "sso", "name": "SSO", "featureType": "BOOLEAN"})
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post",
        "/plans",
        {
            "id": "p",
            "productId": "acme",
            "name": "P",
            "pricingType": "FREE",
            "entitlements": [{"featureId": "sso"}],
        },
    )
    await console.get("/admin/plans/p")
    # Entitlements are replaced, then the parent plan is refused: nothing of it may stay.
    response = await console.post(
        "/admin/plans/p", {"name": "P", "pricingType": "FREE", "parentPlanId": "p", "displayOrder": "0"}
    )
    assert response.status_code == 422 and "loop" in field_error(response.text, "f-parentPlanId")
    assert [e["featureId"] for e in (await api.ok("get", "/plans/p"))["entitlements"]] == ["sso"]


async def test_addon_and_coupon_screens(console: Console, api: ApiEnv) -> None:
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await console.get("/admin/addons/_new")
    made = await console.post(
        "/admin/addons/_new",
        {"id": "extra", "productId": "acme", "name": "Extra", "pricingType": "PAID", "maxQuantity": "3",
         "charges[0].billingPeriod": "ANNUALLY", "charges[0].currency": "jpy", "charges[0].billingModel": "FLAT_FEE",
         "charges[0].amount": "1200"},
    )  # fmt: skip
    assert made.status_code == 303
    addon = await api.ok("get", "/addons/extra")
    assert addon["charges"][0]["amount"] == 1200 and addon["maxQuantity"] == 3
    assert (await console.post("/admin/addons/extra/publish", {})).status_code == 303
    assert (await api.ok("get", "/addons/extra"))["status"] == "PUBLISHED"
    page = await console.get("/admin/addons/extra")
    assert page.status_code == 200 and "Published" in page.text and 'value="1200"' in page.text
    changed = await console.post(
        "/admin/addons/extra",
        {"name": "Extra+", "pricingType": "PAID", "maxQuantity": "", "displayOrder": "2",
         "charges[0].billingPeriod": "ANNUALLY", "charges[0].currency": "JPY", "charges[0].billingModel": "FLAT_FEE",
         "charges[0].amount": "1500"},
    )  # fmt: skip
    assert changed.status_code == 303
    addon = await api.ok("get", "/addons/extra")
    assert (addon["name"], addon["maxQuantity"], addon["priceVersion"]) == ("Extra+", None, 2)
    product = await console.post("/admin/products/acme", {"name": "Acme Inc", "description": "Tools"})
    assert product.status_code == 303
    assert (await api.ok("get", "/products/acme"))["description"] == "Tools"

    await console.get("/admin/coupons/_new")
    months = await console.post(
        "/admin/coupons/_new",
        {"id": "spring", "name": "Spring", "percentOff": "12.5", "duration": "REPEATING"},
    )
    assert months.status_code == 422 and "REPEATING" in field_error(months.text, "f-durationInMonths")
    made = await console.post(
        "/admin/coupons/_new",
        {
            "id": "spring",
            "name": "Spring",
            "percentOff": "12.5",
            "duration": "REPEATING",
            "durationInMonths": "3",
        },
    )
    assert made.status_code == 303
    assert (await api.ok("get", "/coupons/spring"))["percentOff"] == 12.5
    page = await console.get("/admin/coupons/spring")
    assert "12.5 % off" in page.text
    fixed = await console.post(
        "/admin/coupons/_new",
        {"id": "five", "name": "Five", "amountOff": "5.00", "currency": "usd", "duration": "ONCE"},
    )
    assert fixed.status_code == 303 and (await api.ok("get", "/coupons/five"))["amountOff"] == 500
    assert (await console.post("/admin/coupons/five/archive", {})).status_code == 303


async def test_customer_page_and_update(console: Console, api: ApiEnv) -> None:
    await api.ok("post", "/coupons", {"id": "c10", "name": "C10", "percentOff": 10, "duration": "FOREVER"})
    await api.ok("post", "/customers", {"id": "cus|1", "name": "Ada", "email": "ada@example.com"})
    listing = await console.get("/admin/customers?q=ada")
    assert 'href="/admin/customers/cus%7C1?env=' in listing.text
    page = await console.get("/admin/customers/cus%7C1")
    assert page.status_code == 200 and "customer-subscriptions" in page.text
    bad = await console.post(
        "/admin/customers/cus%7C1", {"name": "Ada", "email": "not-an-email", "couponId": "c10"}
    )
    assert bad.status_code == 422 and field_error(bad.text, "f-email")
    saved = await console.post(
        "/admin/customers/cus%7C1",
        {
            "name": "Ada L.",
            "email": "ada@example.com",
            "couponId": "c10",
            "address.city": "Paris",
            "address.country": "fr",
        },
    )
    assert saved.status_code == 303, saved.text
    customer = await api.ok("get", "/customers/cus%7C1")
    assert customer["couponId"] == "c10" and customer["billingInfo"]["address"] == {
        "line1": None, "line2": None, "city": "Paris", "state": None, "postalCode": None, "country": "FR",
    }  # fmt: skip


async def test_tampered_or_revoked_sessions_sign_out(console: Console, database: Database) -> None:
    assert (await console.get("/admin")).status_code == 200
    cookie = console.client.cookies.get("tollgate_admin", path="/admin")
    assert cookie
    console.client.cookies.set("tollgate_admin", cookie[:-6] + "AAAAAA", path="/admin")
    assert (await console.get("/admin", follow_redirects=False)).status_code == 303
    console.client.cookies.set("tollgate_admin", cookie, path="/admin")
    assert (await console.get("/admin")).status_code == 200
    # A new password ends every session signed in with the old one.
    async with database.session() as session:
        new_hash = await hash_password("another password 456")
        await session.execute(
            update(Operator).where(Operator.email == console.email).values(password_hash=new_hash)
        )
    assert (await console.get("/admin", follow_redirects=False)).status_code == 303


async def test_environment_creation_shows_keys_once(console: Console) -> None:
    await console.get("/admin/environments/_new")
    bad = await console.post("/admin/environments/_new", {"slug": "Not Valid", "name": ""})
    assert bad.status_code == 422 and "lower-case" in field_error(bad.text, "f-slug")
    slug = f"env-{uuid.uuid4().hex[:6]}"
    made = await console.post("/admin/environments/_new", {"slug": slug, "name": "Staging"})
    assert made.status_code == 201 and "tg_sk_" in made.text and "tg_pk_" in made.text
    listing = await console.client.get("/admin/environments")
    assert slug in listing.text and "tg_sk_" not in listing.text


def test_amounts_typed_in_major_units() -> None:
    assert to_minor_units("12.50", "usd") == 1250
    assert to_minor_units("1,200", "jpy") == 1200
    assert to_minor_units("1.234", "kwd") == 1234
    for bad in ("12.345", "abc", "1.5"):
        with pytest.raises(ValueError):
            to_minor_units(bad, "jpy" if bad == "1.5" else "usd")
    assert to_major_units(1250, "usd") == "12.50" and to_major_units(1200, "jpy") == "1200"
