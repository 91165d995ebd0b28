"""Pure entitlement arithmetic: how plans, parents, add-ons and subscriptions combine.

No database here, so the rules can be property-tested on their own:

1. Within one plan chain ("everything in Basic, plus"), a child's own entitlement for a
   feature replaces its parent's.
2. An add-on's entitlement × its quantity is ADDED to the plan's entitlement for the same
   feature (a "10 seats" add-on bought twice adds 20 seats); an unlimited add-on makes it
   unlimited; an add-on alone grants the feature.
3. Across subscriptions (different products), the most generous grant wins: unlimited beats
   any limit, a higher limit beats a lower one, a soft limit beats a hard one of the same size.
   Ties are broken on the remaining fields so the result never depends on the order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec


class Grant(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One customer's right to one feature, as stored in the entitlements snapshot."""

    pk: int
    type: str  # FeatureType
    meter: str | None = None  # MeterType for METERED features
    unlimited: bool = False
    limit: int | None = None
    soft: bool = False
    # The entitlement's reset period as configured (e.g. BILLING_PERIOD) ...
    reset: str | None = None
    # ... and the window it means: DAY / WEEK / MONTH / YEAR / None (never resets), anchored here.
    window: str | None = None
    anchor: str | None = None

    def generosity(self) -> tuple[bool, int, bool, str, str, str]:
        return (
            self.unlimited,
            self.limit or 0,
            self.soft,
            self.window or "",
            self.anchor or "",
            self.reset or "",
        )


def override_chain(chain: Iterable[Mapping[str, Grant]]) -> dict[str, Grant]:
    """Grants of a plan chain ordered root first: later (child) plans replace earlier ones per feature."""
    merged: dict[str, Grant] = {}
    for grants in chain:
        merged.update(grants)
    return merged


def add_addon(base: Grant | None, addon: Grant, quantity: int) -> Grant:
    """The plan's grant for a feature raised by `quantity` units of an add-on's grant."""
    unlimited = addon.unlimited or (base is not None and base.unlimited)
    if unlimited:
        limit = None
    elif addon.limit is None:
        limit = base.limit if base is not None else None  # a boolean add-on carries no number
    else:
        limit = (base.limit or 0 if base is not None else 0) + addon.limit * quantity
    template = base if base is not None else addon
    return msgspec.structs.replace(
        template, unlimited=unlimited, limit=limit, soft=(base.soft if base is not None else addon.soft)
    )


def apply_addons(
    plan_grants: Mapping[str, Grant], addons: Iterable[tuple[Mapping[str, Grant], int]]
) -> dict[str, Grant]:
    result = dict(plan_grants)
    for grants, quantity in addons:
        if quantity <= 0:
            continue
        for feature, grant in grants.items():
            result[feature] = add_addon(result.get(feature), grant, quantity)
    return result


def most_generous(grants_per_subscription: Iterable[Mapping[str, Grant]]) -> dict[str, Grant]:
    best: dict[str, Grant] = {}
    for grants in grants_per_subscription:
        for feature, grant in grants.items():
            current = best.get(feature)
            if current is None or grant.generosity() > current.generosity():
                best[feature] = grant
    return best
