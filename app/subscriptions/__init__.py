"""Subscriptions: lifecycle, trials, scheduled changes, preview, usage and entitlements.

Modules, each one job:

- periods.py      calendar arithmetic (billing periods from an anchor, usage windows), pure
- lifecycle.py    a subscription as a pure function of (stored state, now) + the worker step
                  `advance_subscriptions` (job entry: `advance_subscriptions_job`)
- aggregation.py  how plans, parents, add-ons and subscriptions combine into grants, pure
- entitlements.py the engine: compute, materialise in Customer.entitlements_snapshot,
                  invalidate, and the one-query hot path `check_entitlement`
- usage.py        POST /usage: bulk, idempotent, all-or-nothing batches and counters
- pricing.py      charges, tiers, coupons and the proration rule, pure
- service.py      provisioning, changes, cancellation, scheduled changes, previews
- schemas.py      request/response Structs (camelCase)

For the catalog: call `entitlements.invalidate_entitlements_for_plan(session, plan_pk)` /
`invalidate_entitlements_for_addon(session, addon_pk)` when what a plan or add-on grants
changes: only the customers it reaches recompute.
"""
