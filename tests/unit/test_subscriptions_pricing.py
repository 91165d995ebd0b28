"""Price arithmetic and the proration rule (app/subscriptions/pricing.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from app.catalog.models import BillingPeriod
from app.subscriptions.pricing import (
    charge_total,
    discount,
    monthly,
    prorate,
    remaining_fraction,
    tiered_total,
)

TIERS = [
    {"upTo": 10, "unitAmount": 100, "flatAmount": 0},
    {"upTo": 20, "unitAmount": 80, "flatAmount": 50},
    {"upTo": None, "unitAmount": 50, "flatAmount": 0},
]


def test_tiers() -> None:
    assert tiered_total(TIERS, "VOLUME", 5) == 500
    assert tiered_total(TIERS, "VOLUME", 15) == 15 * 80 + 50
    assert tiered_total(TIERS, "VOLUME", 30) == 30 * 50
    assert tiered_total(TIERS, "GRADUATED", 5) == 500
    assert tiered_total(TIERS, "GRADUATED", 15) == 1000 + 5 * 80 + 50
    assert tiered_total(TIERS, "GRADUATED", 30) == 1000 + 800 + 50 + 10 * 50
    assert tiered_total(TIERS, "GRADUATED", 0) == 0


def test_charge_models() -> None:
    assert charge_total("FLAT_FEE", 1000, 1) == 1000
    assert charge_total("PER_UNIT", 250, 4) == 1000
    assert charge_total("USAGE_BASED", 2, 100) == 0  # billed in arrears
    assert monthly(12_000, BillingPeriod.ANNUALLY) == 1000


@given(st.integers(0, 10**9), st.integers(0, 10_000), st.integers(0, 10**9))
def test_discount_bounds(total: int, bp: int, amount_off: int) -> None:
    for off in (
        discount(total, percent_off_bp=bp, amount_off=None),
        discount(total, percent_off_bp=None, amount_off=amount_off),
    ):
        assert isinstance(off, int)
        assert 0 <= off <= total


START = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
lengths = st.integers(1, 400 * 86_400)
amounts = st.integers(0, 10**9)


@given(amounts, lengths, st.floats(0, 1))
def test_no_change_costs_nothing(price: int, length: int, position: float) -> None:
    end = START + dt.timedelta(seconds=length)
    at = START + dt.timedelta(seconds=int(length * position))
    assert prorate(price, price, START, end, at)[2] == 0


@given(amounts, amounts, lengths)
def test_upgrade_at_period_start_costs_the_difference(old: int, new: int, length: int) -> None:
    end = START + dt.timedelta(seconds=length)
    credit, charge, net = prorate(old, new, START, end, START)
    assert (credit, charge, net) == (old, new, new - old)
    assert net <= new


@given(amounts, amounts, lengths, st.floats(0, 1))
def test_proration_sign_and_bounds(old: int, new: int, length: int, position: float) -> None:
    end = START + dt.timedelta(seconds=length)
    at = START + dt.timedelta(seconds=int(length * position))
    credit, charge, net = prorate(old, new, START, end, at)
    assert all(isinstance(x, int) for x in (credit, charge, net))
    assert 0 <= credit <= old
    assert 0 <= charge <= new
    assert net <= new
    if new > old:
        assert net >= 0
    elif new < old:
        assert net <= 0
    fraction = remaining_fraction(START, end, at)
    assert abs(charge - new * fraction) <= 0.5
    assert abs(credit - old * fraction) <= 0.5


def test_half_cent_rounds_up() -> None:
    end = START + dt.timedelta(seconds=2)
    assert prorate(1, 3, START, end, START + dt.timedelta(seconds=1)) == (1, 2, 1)
    assert prorate(0, 0, START, START, START) == (0, 0, 0)
