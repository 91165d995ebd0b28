"""The operator console in Chromium: sign-in, CSRF, deep links, building and publishing a plan."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, BrowserContext, Page, expect

from app.admin import auth
from app.admin.auth import add_operator
from app.db import Database
from app.environments.service import CreatedEnvironment, create_environment
from tests.support.browser import LiveServer, chromium, screenshot_path, serve_app

pytestmark = pytest.mark.browser

EMAIL = "operator@example.com"
PASSWORD = "a long operator password"
ENV = "e2e"

if not Path("/usr/bin/chromium").exists():  # pragma: no cover - `make browser` installs it
    pytest.skip("Chromium is not installed (make browser)", allow_module_level=True)


@dataclass
class Console:
    server: LiveServer
    browser: Browser
    env: CreatedEnvironment
    contexts: list[BrowserContext] = field(default_factory=list)

    def page(self) -> Page:
        context = self.browser.new_context(base_url=self.server.url, viewport={"width": 1280, "height": 860})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        # Any script or style the CSP blocks, or any script error, fails the test at its end
        # (refusals such as a 401 or 422 page are expected and logged by Chromium too).
        problems: list[str] = []
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.problems = problems  # type: ignore[attr-defined]
        return page

    def api(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        return httpx.request(
            method, self.server.url + "/api/v1" + path, json=json, headers={"X-API-KEY": self.env.server_key}
        )


@contextmanager
def running_console(directory: Path, **settings_overrides: Any) -> Iterator[Console]:
    """The app served live with environment ENV and the operator EMAIL, and a Chromium."""
    created: dict[str, CreatedEnvironment] = {}

    async def prepare(database: Database) -> None:
        async with database.session() as session:
            created["env"] = await create_environment(session, ENV, "End to end")
            await add_operator(session, EMAIL, PASSWORD)

    with pytest.MonkeyPatch.context() as patch:
        # Still argon2id, with small costs: the machine is shared and the real cost is not under test.
        patch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        with (
            serve_app(directory, prepare=prepare, **settings_overrides) as server,
            chromium() as browser,
        ):
            console = Console(server=server, browser=browser, env=created["env"])
            yield console
            for context in console.contexts:
                context.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with running_console(tmp_path_factory.mktemp("console")) as console:
        yield console


def sign_in(page: Page, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def no_problems(page: Page) -> None:
    assert page.problems == []  # type: ignore[attr-defined]


def test_sign_in_refuses_wrong_password_then_lands_on_dashboard(console: Console) -> None:
    page = console.page()
    page.goto("/admin")
    expect(page).to_have_url(f"{console.server.url}/admin/login")
    page.screenshot(path=screenshot_path("login"))
    sign_in(page, "not the password")
    expect(page.get_by_role("alert")).to_contain_text("The email or password is not right.")
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    sign_in(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_label("Environment")).to_have_value(ENV)
    page.screenshot(path=screenshot_path("dashboard"), full_page=True)
    no_problems(page)


def test_deep_link_comes_back_after_sign_in(console: Console) -> None:
    assert (
        console.api(
            "post", "/features", {"id": "linked", "name": "Linked", "featureType": "BOOLEAN"}
        ).status_code
        == 201
    )
    page = console.page()
    deep = f"/admin/features/linked?env={ENV}"
    page.goto(deep)
    expect(page).to_have_url(
        f"{console.server.url}/admin/login?next=%2Fadmin%2Ffeatures%2Flinked%3Fenv%3De2e"
    )
    sign_in(page)
    expect(page).to_have_url(console.server.url + deep)
    expect(page.get_by_role("heading", name="Linked")).to_be_visible()
    no_problems(page)


def test_post_without_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    page = console.page()
    page.goto("/admin/login")
    sign_in(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # Same cookies as the signed-in page, but no token: what a forged cross-site form sends.
    response = page.request.post(
        f"/admin/features/_new?env={ENV}", form={"id": "forged", "name": "Forged", "featureType": "BOOLEAN"}
    )
    assert response.status == 403
    assert "security token" in response.text()
    assert console.api("get", "/features/forged").status_code == 404
    # And a real cross-site page posting a form to the console is refused the same way.
    page.route("http://attacker.test/", lambda route: route.fulfill(
        content_type="text/html",
        body=f'<form method="post" action="{console.server.url}/admin/features/_new?env={ENV}">'
        '<input name="id" value="forged2"><input name="name" value="F"><input name="featureType" value="BOOLEAN">'
        '<button>go</button></form>',
    ))  # fmt: skip
    page.goto("http://attacker.test/")
    page.get_by_role("button", name="go").click()
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    assert console.api("get", "/features/forged2").status_code == 404


def test_build_and_publish_a_plan_through_the_forms(console: Console) -> None:
    page = console.page()
    page.goto(f"/admin/features?env={ENV}")
    sign_in(page)
    expect(page.get_by_role("heading", name="Features")).to_be_visible()

    # A validation error is shown next to its field (the service's `param`), the form kept.
    page.get_by_role("link", name="New feature").click()
    expect(page.get_by_role("heading", name="New feature")).to_be_visible()
    page.locator("#f-id").fill("api-calls")
    page.locator("#f-name").fill("API calls")
    page.get_by_label("Type").select_option("METERED")
    page.get_by_role("button", name="Create feature").click()
    field_error = page.locator("#f-meterType-error")
    expect(field_error).to_have_text("A metered feature needs a meterType.")
    expect(page.get_by_label("Meter")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-id")).to_have_value("api-calls")
    page.screenshot(path=screenshot_path("feature-validation-error"), full_page=True)
    page.get_by_label("Meter").select_option("INCREMENTAL")
    page.get_by_label("Unit (singular)").fill("call")
    page.get_by_role("button", name="Create feature").click()
    expect(page.get_by_role("status")).to_have_text("Feature api-calls created.")
    expect(page).to_have_url(f"{console.server.url}/admin/features/api-calls?env={ENV}")

    page.get_by_role("link", name="Products").click()
    page.get_by_role("link", name="New product").click()
    expect(page.get_by_role("heading", name="New product")).to_be_visible()
    page.locator("#f-id").fill("acme")
    page.locator("#f-name").fill("Acme")
    page.get_by_role("button", name="Create product").click()
    expect(page.get_by_role("status")).to_have_text("Product acme created.")

    page.get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="New plan").click()
    expect(page.get_by_role("heading", name="New plan")).to_be_visible()
    page.locator("#f-id").fill("pro")
    page.get_by_label("Product").select_option("acme")
    page.locator("#f-name").fill("Pro")
    page.locator("#f-entitlements-0-featureId").select_option("api-calls")
    page.locator("#f-entitlements-0-usageLimit").fill("10000")
    page.locator("#f-charges-0-amount").fill("12.50")
    page.get_by_role("button", name="+ Add a price line").click()
    page.locator("#f-charges-1-billingPeriod").select_option("ANNUALLY")
    page.locator("#f-charges-1-amount").fill("120")
    page.get_by_role("button", name="Create plan").click()
    expect(page.get_by_role("status")).to_have_text("Plan pro created as a draft.")
    expect(page.locator(".page-header .badge")).to_have_text("Draft")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_have_text("Plan published.")
    expect(page.locator(".page-header .badge")).to_have_text("Published")
    versions = page.get_by_role("region", name="Price versions")
    expect(versions).to_contain_text("v1")
    expect(versions).to_contain_text("$12.50 flat")
    page.screenshot(path=screenshot_path("plan-page"), full_page=True)

    plan = console.api("get", "/plans/pro").json()
    assert plan["status"] == "PUBLISHED"
    assert [(c["billingPeriod"], c["amount"]) for c in plan["charges"]] == [
        ("MONTHLY", 1250),
        ("ANNUALLY", 12000),
    ]
    assert plan["entitlements"][0]["usageLimit"] == 10000

    # Changing a published price makes version 2; the list's search runs through htmx.
    page.locator("#f-charges-0-amount").fill("15")
    page.get_by_role("button", name="Save plan").click()
    expect(page.get_by_role("status")).to_have_text("Plan saved (price version 2).")
    page.get_by_role("link", name="Plans").click()
    expect(page.get_by_role("heading", name="Plans")).to_be_visible()
    search = page.get_by_label("Search by id or name")
    search.fill("nothing-like-this")
    search.press("Enter")
    expect(page.locator("#results")).to_contain_text("Nothing matches")
    search.fill("pro")  # typing alone searches (htmx, after a short pause)
    expect(page.locator("#results")).to_contain_text("Pro")
    expect(page).to_have_url(f"{console.server.url}/admin/plans?env={ENV}&q=pro&status=")
    page.screenshot(path=screenshot_path("plans-list"), full_page=True)
    no_problems(page)


def test_customer_page_and_environment_pages(console: Console) -> None:
    created = console.api(
        "post",
        "/customers",
        {
            "id": "cus-42",
            "name": "Ada",
            "email": "ada@example.com",
            "billingInfo": {"invoiceName": "Ada Ltd"},
        },
    )
    assert created.status_code in (200, 201), created.text
    page = console.page()
    page.goto(f"/admin/customers?env={ENV}")
    sign_in(page)
    page.get_by_label("Search by id, name or email").fill("ada@")
    page.get_by_label("Search by id, name or email").press("Enter")
    expect(page.locator("#results")).to_contain_text("cus-42")
    page.get_by_role("link", name="cus-42").click()
    expect(page.get_by_role("region", name="Billing information")).to_contain_text("Ada Ltd")
    page.get_by_label("Country (2 letters)").fill("fr")
    page.get_by_role("button", name="Save customer").click()
    expect(page.get_by_role("status")).to_have_text("Customer saved.")
    page.screenshot(path=screenshot_path("customer-page"), full_page=True)
    page.get_by_role("link", name="Environments").click()
    page.get_by_role("link", name="New environment").click()
    expect(page.get_by_role("heading", name="New environment")).to_be_visible()
    page.locator("#f-slug").fill("staging")
    page.get_by_role("button", name="Create environment").click()
    expect(page.locator("#server-key")).to_contain_text("tg_sk_")
    # htmx keeps no copy of pages in localStorage (it would hold this key), and Back still works.
    page.get_by_role("navigation").get_by_role("link", name="Features").click()
    expect(page.get_by_role("heading", name="Features")).to_be_visible()
    assert page.evaluate("() => window.localStorage.getItem('htmx-history-cache')") is None
    page.go_back()
    expect(page.get_by_role("heading", name="New environment")).to_be_visible()
    page.go_forward()
    expect(page.get_by_role("heading", name="Features")).to_be_visible()
    page.get_by_role("navigation").get_by_role("link", name="Environments").click()
    page.get_by_role("link", name="Open").last.click()
    expect(page.get_by_label("Environment")).to_have_value("staging")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # The switcher submits itself when a value is picked (a plain form with a button otherwise).
    page.get_by_role("navigation").get_by_role("link", name="Customers").click()
    expect(page.locator("#results")).to_contain_text("No customers yet")
    page.get_by_label("Environment").select_option(ENV)
    expect(page).to_have_url(f"{console.server.url}/admin/customers?env={ENV}")
    expect(page.locator("#results")).to_contain_text("cus-42")
    # With the keyboard, an arrow key only moves through the options; the Switch button switches.
    switcher = page.get_by_label("Environment")
    switcher.focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)
    expect(page).to_have_url(f"{console.server.url}/admin/customers?env={ENV}")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{console.server.url}/admin/customers?env=staging")
    page.get_by_label("Environment").select_option(ENV)
    expect(page.locator("#results")).to_contain_text("cus-42")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=screenshot_path("customers-mobile"), full_page=True)
    no_problems(page)


def test_provision_a_subscription_with_preview_then_cancel_it(console: Console) -> None:
    for path, body in [
        ("/products", {"id": "wired", "name": "Wired"}),
        (
            "/plans",
            {
                "id": "wired-basic",
                "productId": "wired",
                "name": "Basic",
                "pricingType": "PAID",
                "charges": [
                    {
                        "billingPeriod": "MONTHLY",
                        "currency": "usd",
                        "billingModel": "FLAT_FEE",
                        "amount": 1500,
                    }
                ],
            },
        ),
        ("/plans/wired-basic/publish", None),
        ("/customers", {"id": "cus-sub", "name": "Grace"}),
    ]:
        response = console.api("post", path, body)
        assert response.status_code in (200, 201), response.text
    page = console.page()
    page.goto(f"/admin/customers/cus-sub?env={ENV}")
    sign_in(page)
    subs = page.get_by_role("region", name="Subscriptions")
    expect(subs).to_contain_text("No subscriptions.")
    form = page.locator("#provision")
    form.get_by_label("Plan").select_option("wired-basic")
    form.get_by_role("button", name="Preview").click()
    expect(page.locator("#provision [data-testid=due-now]")).to_have_text("$15")
    page.screenshot(path=screenshot_path("customer-provision-preview"), full_page=True)
    page.get_by_role("button", name="Confirm and provision").click()
    expect(page.get_by_role("status").first).to_contain_text("provisioned.")
    expect(subs).to_contain_text("Basic")
    expect(subs).to_contain_text("Active")
    expect(page.get_by_role("region", name="Effective entitlements and usage")).to_be_visible()
    # The subscription's own page links back to its customer.
    subs.locator("h3 a").click()
    expect(page.get_by_role("heading", name="Basic")).to_be_visible()
    page.get_by_role("link", name="← Customer cus-sub").click()
    card = page.locator("#customer-subscriptions")
    card.get_by_label("Cancel", exact=True).select_option("IMMEDIATE")
    card.get_by_role("button", name="Cancel subscription").click()
    expect(page.get_by_role("status").first).to_have_text("Subscription canceled.")
    expect(card).to_contain_text("Canceled")
    expect(card.get_by_role("button", name="Cancel subscription")).to_have_count(0)
    no_problems(page)
