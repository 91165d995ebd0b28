"""Billing periods, usage windows and the pure lifecycle function."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from app.catalog.models import BillingPeriod, TrialEndBehavior
from app.subscriptions.lifecycle import SubState, advance
from app.subscriptions.models import SubscriptionStatus as S
from app.subscriptions.periods import EPOCH, add_months, billing_period_window, reset_window

UTC = dt.UTC


def test_month_end_clamping() -> None:
    jan31 = dt.datetime(2026, 1, 31, 9, tzinfo=UTC)
    assert add_months(jan31, 1) == dt.datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert add_months(jan31, 2) == dt.datetime(2026, 3, 31, 9, tzinfo=UTC)
    assert add_months(dt.datetime(2028, 1, 31, tzinfo=UTC), 1) == dt.datetime(2028, 2, 29, tzinfo=UTC)
    assert add_months(dt.datetime(2028, 2, 29, tzinfo=UTC), 12) == dt.datetime(2029, 2, 28, tzinfo=UTC)
    assert add_months(jan31, -2) == dt.datetime(2025, 11, 30, 9, tzinfo=UTC)


moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(moments, moments, st.sampled_from(list(BillingPeriod)))
def test_billing_window_contains_moment(
    anchor: dt.datetime, moment: dt.datetime, period: BillingPeriod
) -> None:
    start, end = billing_period_window(anchor, period, moment)
    assert start <= moment < end
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])
    assert start.time() == anchor.time()
    assert billing_period_window(anchor, period, start) == (start, end)


@given(moments, moments, st.sampled_from(["DAY", "WEEK", "MONTH", "YEAR"]))
def test_reset_window_contains_moment(anchor: dt.datetime, moment: dt.datetime, reset: str) -> None:
    start, end = reset_window(reset, anchor, moment)
    assert end is not None
    assert start <= moment < end


def test_no_reset_window() -> None:
    assert reset_window(None, dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 5, 1, tzinfo=UTC)) == (
        EPOCH,
        None,
    )


T0 = dt.datetime(2026, 1, 31, tzinfo=UTC)


def state(**changes: object) -> SubState:
    start, end = billing_period_window(T0, BillingPeriod.MONTHLY, T0)
    base = SubState(
        status=S.ACTIVE,
        plan_pk=1,
        price_version_pk=None,
        billing_period=BillingPeriod.MONTHLY,
        start_date=T0,
        billing_anchor=T0,
        current_period_start=start,
        current_period_end=end,
        activated_at=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@given(
    st.integers(0, 3 * 365 * 86_400), st.sampled_from(list(TrialEndBehavior)), st.booleans(), st.booleans()
)
def test_advance_is_idempotent_and_consistent(
    seconds: int, behavior: TrialEndBehavior, trial: bool, scheduled: bool
) -> None:
    now = T0 + dt.timedelta(seconds=seconds)
    changes: dict[str, object] = {}
    if trial:
        changes.update(status=S.IN_TRIAL, trial_end=T0 + dt.timedelta(days=14), activated_at=None)
    if scheduled:
        changes.update(
            scheduled_at=dt.datetime(2026, 2, 28, tzinfo=UTC),
            scheduled_change={"planPk": 2, "billingPeriod": "ANNUALLY", "addons": []},
        )
    s = state(**changes)
    once = advance(s, behavior, now)
    assert advance(once, behavior, now) == once
    if once.status in (S.ACTIVE, S.IN_TRIAL):
        assert once.current_period_start <= now < once.current_period_end or once.status == S.IN_TRIAL
    # Stepping through an intermediate moment gives the same result as jumping.
    middle = T0 + dt.timedelta(seconds=seconds // 2)
    assert advance(advance(s, behavior, middle), behavior, now) == once


def test_trial_cancel_behavior_expires_and_scheduled_change_applies() -> None:
    trial = state(status=S.IN_TRIAL, trial_end=T0 + dt.timedelta(days=7), activated_at=None)
    expired = advance(trial, TrialEndBehavior.CANCEL_SUBSCRIPTION, T0 + dt.timedelta(days=8))
    assert expired.status == S.EXPIRED
    assert not expired.grants
    converted = advance(trial, TrialEndBehavior.CONVERT_TO_PAID, T0 + dt.timedelta(days=8))
    assert converted.status == S.ACTIVE
    assert converted.billing_anchor == T0 + dt.timedelta(days=7)

    at = dt.datetime(2026, 2, 28, tzinfo=UTC)
    change = {"planPk": 2, "billingPeriod": "ANNUALLY", "addons": [{"addonPk": 9, "quantity": 2}]}
    moved = advance(state(scheduled_at=at, scheduled_change=change), TrialEndBehavior.CONVERT_TO_PAID, at)
    assert moved.plan_pk == 2
    assert moved.billing_period == BillingPeriod.ANNUALLY
    assert moved.current_period_end == dt.datetime(2027, 2, 28, tzinfo=UTC)
    assert moved.addons == ((9, 2, None),)
    assert moved.scheduled_change is None


def test_pending_grants_only_after_activation() -> None:
    assert not state(status=S.PAYMENT_PENDING, activated_at=None).grants
    assert state(status=S.PAYMENT_PENDING).grants
    assert not state(status=S.CANCELED).grants
