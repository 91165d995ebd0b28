"""Calendar arithmetic for billing periods and usage-reset windows. Pure functions, all UTC.

Periods are always computed from a fixed anchor (`anchor + k months`), never by stepping
from the previous period end, so an anchor on the 31st gives Jan 31 → Feb 28 (29) → Mar 31
instead of drifting to the 28th for ever.
"""

from __future__ import annotations

import calendar
import datetime as dt

from app.catalog.models import BillingPeriod, ResetPeriod

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    """`anchor` moved by whole months, the day clamped to the target month's length."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def _months_between(anchor: dt.datetime, moment: dt.datetime) -> int:
    return (moment.year - anchor.year) * 12 + (moment.month - anchor.month)


def _monthly_window(anchor: dt.datetime, step: int, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The window [anchor + k·step months, anchor + (k+1)·step months) that contains `moment`."""
    k = _months_between(anchor, moment) // step
    start = add_months(anchor, k * step)
    # The estimate can be one step off either way because of day/time within the month.
    while start > moment:
        k -= 1
        start = add_months(anchor, k * step)
    end = add_months(anchor, (k + 1) * step)
    while end <= moment:
        k += 1
        start, end = end, add_months(anchor, (k + 1) * step)
    return start, end


def _fixed_window(
    anchor: dt.datetime, length: dt.timedelta, moment: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    k = (moment - anchor) // length
    start = anchor + k * length
    return start, start + length


def billing_period_window(
    anchor: dt.datetime, period: BillingPeriod, moment: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The billing period [start, end) that contains `moment`."""
    return _monthly_window(anchor, 12 if period == BillingPeriod.ANNUALLY else 1, moment)


def next_period_end(anchor: dt.datetime, period: BillingPeriod, start: dt.datetime) -> dt.datetime:
    return billing_period_window(anchor, period, start)[1]


def reset_window(
    reset: str | None, anchor: dt.datetime, moment: dt.datetime
) -> tuple[dt.datetime, dt.datetime | None]:
    """The usage window containing `moment` for a (normalised) reset period.

    `reset` is DAY / WEEK / MONTH / YEAR or None; BILLING_PERIOD has already been turned into
    MONTH or YEAR anchored at the billing anchor. None = usage never resets (the window began
    at the epoch and never ends).
    """
    if reset is None:
        return EPOCH, None
    if reset == ResetPeriod.DAY:
        return _fixed_window(anchor, dt.timedelta(days=1), moment)
    if reset == ResetPeriod.WEEK:
        return _fixed_window(anchor, dt.timedelta(days=7), moment)
    if reset == ResetPeriod.YEAR:
        return _monthly_window(anchor, 12, moment)
    return _monthly_window(anchor, 1, moment)
