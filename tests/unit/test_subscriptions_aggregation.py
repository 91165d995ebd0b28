"""Properties of the entitlement combination rules (app/subscriptions/aggregation.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.subscriptions.aggregation import Grant, add_addon, apply_addons, most_generous, override_chain

FEATURES = ["seats", "calls", "sso"]

grants = st.builds(
    Grant,
    pk=st.just(1),
    type=st.just("METERED"),
    unlimited=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 10_000)),
    soft=st.booleans(),
    reset=st.sampled_from([None, "MONTH", "DAY"]),
    window=st.sampled_from([None, "MONTH", "DAY"]),
    anchor=st.sampled_from([None, "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]),
)
per_subscription = st.dictionaries(st.sampled_from(FEATURES), grants, max_size=3)


@given(st.lists(per_subscription, max_size=5), st.randoms())
def test_most_generous_is_order_independent(subs: list[dict[str, Grant]], rnd: object) -> None:
    shuffled = list(subs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert most_generous(subs) == most_generous(shuffled)


@given(st.lists(per_subscription, min_size=1, max_size=5))
def test_most_generous_wins(subs: list[dict[str, Grant]]) -> None:
    best = most_generous(subs)
    assert set(best) == {feature for sub in subs for feature in sub}
    for feature, grant in best.items():
        offered = [sub[feature] for sub in subs if feature in sub]
        assert grant in offered
        assert grant.unlimited == any(g.unlimited for g in offered)
        if not grant.unlimited:
            assert (grant.limit or 0) == max(g.limit or 0 for g in offered)


@given(st.integers(0, 1000), st.integers(0, 100), st.integers(0, 20))
def test_addon_limit_scales_with_quantity(base: int, per_addon: int, quantity: int) -> None:
    plan = {"seats": Grant(pk=1, type="METERED", limit=base)}
    addon = {"seats": Grant(pk=1, type="METERED", limit=per_addon)}
    combined = apply_addons(plan, [(addon, quantity)])
    assert combined["seats"].limit == base + per_addon * quantity
    # Two purchases of the same quantity split in two add the same as one.
    split = apply_addons(plan, [(addon, quantity), (addon, quantity)])
    assert split["seats"].limit == base + 2 * per_addon * quantity


@given(grants, grants, st.integers(1, 10))
def test_unlimited_anywhere_is_unlimited(base: Grant, addon: Grant, quantity: int) -> None:
    result = add_addon(base, addon, quantity)
    assert result.unlimited == (base.unlimited or addon.unlimited)
    if result.unlimited:
        assert result.limit is None


def test_addon_alone_grants_and_boolean_stays_boolean() -> None:
    sso = Grant(pk=2, type="BOOLEAN")
    assert apply_addons({}, [({"sso": sso}, 1)]) == {"sso": sso}
    assert add_addon(sso, sso, 3).limit is None
    seats = Grant(pk=1, type="METERED", limit=10)
    assert apply_addons({}, [({"seats": seats}, 3)])["seats"].limit == 30


def test_child_overrides_parent() -> None:
    parent = {"seats": Grant(pk=1, type="METERED", limit=5), "sso": Grant(pk=2, type="BOOLEAN")}
    child = {"seats": Grant(pk=1, type="METERED", limit=2)}
    merged = override_chain([parent, child])
    assert merged["seats"].limit == 2  # the child's own value, even when lower
    assert "sso" in merged
