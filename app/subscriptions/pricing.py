"""Pure price arithmetic: charges, tiers, coupons and proration. Integer minor units only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from app.catalog.models import BillingModel, BillingPeriod, TiersMode
from app.core.money import round_half_up


def tiered_total(tiers: Sequence[dict[str, Any]], mode: TiersMode | str | None, quantity: int) -> int:
    """VOLUME: every unit at the price of the tier the quantity falls in (plus its flat fee).
    GRADUATED: each tier prices the units that fall inside it (plus each touched tier's flat fee)."""
    if quantity <= 0 or not tiers:
        return 0
    if mode == TiersMode.GRADUATED:
        total, below = 0, 0
        for tier in tiers:
            up_to = tier.get("upTo")
            units = quantity - below if up_to is None else min(quantity, up_to) - below
            if units <= 0:
                break
            total += units * int(tier.get("unitAmount") or 0) + int(tier.get("flatAmount") or 0)
            if up_to is None or quantity <= up_to:
                break
            below = up_to
        return total
    for tier in tiers:
        up_to = tier.get("upTo")
        if up_to is None or quantity <= up_to:
            return quantity * int(tier.get("unitAmount") or 0) + int(tier.get("flatAmount") or 0)
    last = tiers[-1]
    return quantity * int(last.get("unitAmount") or 0) + int(last.get("flatAmount") or 0)


def charge_total(
    model: BillingModel | str, amount: int | None, quantity: int, tiers_mode: Any = None, tiers: Any = None
) -> int:
    """The recurring amount of one charge for a quantity. USAGE_BASED is billed in arrears: 0 here."""
    if model == BillingModel.FLAT_FEE:
        return (amount or 0) * quantity
    if model == BillingModel.PER_UNIT:
        return (amount or 0) * quantity
    if model == BillingModel.TIERED:
        return tiered_total(tiers or [], tiers_mode, quantity)
    return 0


def monthly(total: int, period: BillingPeriod) -> Fraction:
    """A recurring amount normalised to one month, to compare configurations of different periods."""
    return Fraction(total, 12) if period == BillingPeriod.ANNUALLY else Fraction(total)


def discount(total: int, *, percent_off_bp: int | None, amount_off: int | None) -> int:
    """The coupon's discount on `total`, rounded half-up, never more than the total."""
    if total <= 0:
        return 0
    if percent_off_bp is not None:
        off = round_half_up(Fraction(total * percent_off_bp, 10_000))
    else:
        off = amount_off or 0
    return max(0, min(total, off))


def remaining_fraction(period_start: dt.datetime, period_end: dt.datetime, at: dt.datetime) -> Fraction:
    """Share of the period still ahead at `at`, per whole second, within [0, 1]."""
    length = int((period_end - period_start).total_seconds())
    if length <= 0:
        return Fraction(0)
    left = int((period_end - at).total_seconds())
    return Fraction(max(0, min(length, left)), length)


def prorate(
    old_recurring: int,
    new_recurring: int,
    period_start: dt.datetime,
    period_end: dt.datetime,
    at: dt.datetime,
) -> tuple[int, int, int]:
    """Proration of an immediate change at `at` inside [period_start, period_end).

    With f = seconds left in the period / seconds in the period (an exact fraction), the
    customer is credited round_half_up(old × f) for the unused part of the old recurring
    price and charged round_half_up(new × f) for the rest of the period at the new one;
    both are rounded separately, half-up, to minor units. Returns (credit, charge, net =
    charge − credit); a negative net is a credit owed to the customer. Amounts are the
    recurring prices after the coupon.
    """
    fraction = remaining_fraction(period_start, period_end, at)
    credit = round_half_up(old_recurring * fraction)
    charge = round_half_up(new_recurring * fraction)
    return credit, charge, charge - credit
