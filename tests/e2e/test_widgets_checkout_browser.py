"""The `make run` demo in Chromium, end to end: the demo environment connected to the mounted
sandbox as `tollgate run` connects it; upgrade on /demo (script tag) through the sandbox's
Checkout and back, the portal showing the new plan and the host page hearing
`tollgate:checkout-completed`; "Manage billing" to the sandbox's Billing Portal and back; the
React demo's `onCheckoutCompleted`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from app.db import Database
from app.demo_data import connect_demo_sandbox, seed_demo_if_empty
from tests.support.billing import GOOD_CARD
from tests.support.browser import LiveServer, chromium, screenshot_path, serve_app

pytestmark = pytest.mark.browser

if not Path("/usr/bin/chromium").exists():  # pragma: no cover - `make browser` installs it
    pytest.skip("Chromium is not installed (make browser)", allow_module_level=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("demo-checkout")

    async def seed(database: Database) -> None:
        await seed_demo_if_empty(database, directory)

    with serve_app(directory, prepare=seed, embedded_sandbox=True) as server:
        # What `tollgate run` does once the server listens (the SDK reaches the mounted sandbox).
        assert server.run(lambda database: connect_demo_sandbox(database, server.settings)) is True
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _page(browser: Browser, server: LiveServer) -> Page:
    page = browser.new_page(base_url=server.url, viewport={"width": 1200, "height": 900})
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.problems = problems  # type: ignore[attr-defined]
    return page


def _logged(page: Page, event: str) -> list[dict[str, Any]]:
    """The details of `event` in the demo page's own event log (newest first)."""
    texts = page.locator(f"#demo-log li[data-event='{event}']").all_inner_texts()
    return [json.loads(text.split(f"tollgate:{event} ", 1)[1]) for text in texts]


def test_demo_upgrade_through_sandbox_checkout_then_billing_portal(
    demo: LiveServer, browser: Browser
) -> None:
    page = _page(browser, demo)
    page.goto("/demo")
    page.locator("#demo-paywall[ready]").wait_for()
    paywall = page.locator("#demo-paywall iframe").content_frame
    portal = page.locator("#demo-portal iframe").content_frame
    # A customer never billed: no "Manage billing" before the first payment.
    expect(portal.get_by_text("You have no active subscription yet.")).to_be_visible()
    assert portal.get_by_role("button", name="Manage billing").count() == 0

    # Pro has no trial: the confirmation with the preview, then the whole window goes to Checkout.
    paywall.locator('li[data-plan-id="pro"] form.tg-action button').click()
    confirm = paywall.locator('.tg-confirm[data-change-type="NEW"]')
    expect(confirm.locator('[data-testid="due-now"]')).to_have_text("$99")
    confirm.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url("**/sandbox/stripe/**")
    assert page.locator("#email").count() == 0, "the Stripe customer exists: no email asked"
    page.screenshot(path=str(screenshot_path("demo-sandbox-checkout")), full_page=True)
    page.fill("#card_number", GOOD_CARD)
    page.fill("#name", "Ada Lovelace")
    page.click("#submit")

    # Back on /demo: the marker is taken off the address, the portal shows the plan and says so.
    # (tollgate.js may already have taken the marker off the address when this looks)
    page.wait_for_url(re.compile(r"/demo(\?|$)"))
    page.locator("#demo-portal[ready]").wait_for()
    assert "tollgate_checkout" not in page.url and "subscriptionId" not in page.url
    expect(portal.locator('[data-testid="checkout-notice"]')).to_have_text(
        "Payment received: you are now on Pro."
    )
    expect(portal.locator(".tg-sub .tg-plan-name")).to_have_text("Pro")
    expect(page.locator("#demo-log li[data-event='checkout-completed']")).to_have_count(1)
    [completed] = _logged(page, "checkout-completed")
    assert completed["planId"] == "pro" and completed["status"] == "ACTIVE" and completed["completed"] is True
    assert completed["subscriptionId"].startswith("sub_")
    expect(paywall.locator('li[data-plan-id="pro"][data-action="current"]')).to_be_visible()
    page.screenshot(path=str(screenshot_path("demo-back-from-checkout")), full_page=True)

    # A reload does not replay the outcome.
    page.reload()
    page.locator("#demo-portal[ready]").wait_for()
    expect(portal.locator(".tg-sub .tg-plan-name")).to_have_text("Pro")
    assert portal.locator('[data-testid="checkout-notice"]').count() == 0

    # Billed now: "Manage billing" hands the whole window to the Billing Portal, and back.
    portal.get_by_role("button", name="Manage billing").click()
    page.wait_for_url("**/sandbox/stripe/**")
    expect(page.locator("body")).to_contain_text("4242")
    page.screenshot(path=str(screenshot_path("demo-sandbox-billing-portal")), full_page=True)
    page.click("#return-link")
    page.wait_for_url(re.compile(r"/demo(\?|$)"))
    page.locator("#demo-portal[ready]").wait_for()
    assert page.problems == []  # type: ignore[attr-defined]

    # The React demo hears the same outcome through onCheckoutCompleted.
    react = _page(browser, demo)
    react.goto(
        f"/demo/react?tollgate_checkout=success&checkoutCompleted=true&subscriptionId={completed['subscriptionId']}"
    )
    expect(react.locator("#demo-checkout")).to_have_text(
        f"Checkout completed: subscription {completed['subscriptionId']} is now on pro (ACTIVE)."
    )
    assert "tollgate_checkout" not in react.url
    react.screenshot(path=str(screenshot_path("demo-react-checkout-completed")), full_page=True)
    assert react.problems == []  # type: ignore[attr-defined]
    react.close()
    page.close()
