"""Billing-id links open the right page of Stripe's dashboard (or the sandbox's own page)."""

from __future__ import annotations

import pytest

from app.billing.gateway import dashboard_url
from app.settings import load_settings


@pytest.mark.parametrize(
    ("stripe_id", "live", "expected"),
    [
        ("cus_1", False, "https://dashboard.stripe.com/test/customers/cus_1"),
        ("sub_1", True, "https://dashboard.stripe.com/subscriptions/sub_1"),
        ("prod_1", False, "https://dashboard.stripe.com/test/products/prod_1"),
        ("price_1", False, "https://dashboard.stripe.com/test/prices/price_1"),
        ("in_1", True, "https://dashboard.stripe.com/invoices/in_1"),
        ("evt_1", False, "https://dashboard.stripe.com/test/events/evt_1"),
        ("acct_1", False, "https://dashboard.stripe.com/acct_1/test/dashboard"),
        ("acct_1", True, "https://dashboard.stripe.com/acct_1/dashboard"),
        ("SUMMER20", False, "https://dashboard.stripe.com/test/coupons/SUMMER20"),
    ],
)
def test_test_and_live_links(stripe_id: str, live: bool, expected: str) -> None:
    assert dashboard_url(load_settings(), False, live, stripe_id) == expected


def test_sandbox_links_stay_on_the_sandbox() -> None:
    settings = load_settings()
    assert dashboard_url(settings, True, False, "acct_1") == f"{settings.sandbox_api_base}/dashboard/acct_1"


def test_our_tg_ids_open_the_section_they_are_given() -> None:
    # Our product and coupon ids both read tg_...: the caller names the dashboard's section.
    settings = load_settings()
    assert (
        dashboard_url(settings, False, False, "tg_int_1_plan_7", "products")
        == "https://dashboard.stripe.com/test/products/tg_int_1_plan_7"
    )
    assert (
        dashboard_url(settings, False, True, "tg_int_1_coupon_3", "coupons")
        == "https://dashboard.stripe.com/coupons/tg_int_1_coupon_3"
    )
