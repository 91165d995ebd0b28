"""Form values of each catalog screen: from a submitted form or an entity, and on to API data.

`values` is what a form shows: strings, plus lists of row dicts for entitlements and charges,
so a refused form is shown again exactly as it was typed.
"""

from __future__ import annotations

from typing import Any

from app.admin.forms import (
    Errors,
    FormData,
    all_values,
    checked,
    row_indexes,
    to_major_units,
    to_minor_units,
)
from app.catalog import schemas as s

ENTITLEMENT_FIELDS = ("featureId", "usageLimit", "unlimited", "hasSoftLimit", "resetPeriod")
CHARGE_FIELDS = (
    "billingPeriod",
    "currency",
    "billingModel",
    "amount",
    "featureId",
    "tiersMode",
    "tiers",
    "minQuantity",
    "maxQuantity",
)


def _scalars(form: FormData, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: str(form.get(name) or "").strip() for name in names}


def _optional(data: dict[str, Any], key: str, value: Any) -> None:
    if value not in (None, ""):
        data[key] = value


def _amount(text: str, currency: str | None, key: str, errors: Errors) -> int | None:
    """Typed major units -> minor units; on a typo, the error goes on field `key`."""
    if not text:
        return None
    try:
        return to_minor_units(text, currency)
    except ValueError:
        errors[key] = "Enter an amount such as 12.50."
        return None


def _whole_number(value: str, key: str, errors: Errors) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        errors[key] = "Enter a whole number."
        return None


# ---- features, products, coupons ------------------------------------------------------------

FEATURE_FIELDS = ("id", "name", "description", "featureType", "meterType", "unitSingular", "unitPlural")


def feature_values(form: FormData | None = None, feature: s.FeatureOut | None = None) -> dict[str, Any]:
    if form is not None:
        return _scalars(form, FEATURE_FIELDS)
    if feature is None:
        return dict.fromkeys(FEATURE_FIELDS, "") | {"featureType": "BOOLEAN"}
    return {
        "id": feature.id,
        "name": feature.name,
        "description": feature.description or "",
        "featureType": feature.feature_type.value,
        "meterType": feature.meter_type.value if feature.meter_type else "",
        "unitSingular": feature.unit_singular or "",
        "unitPlural": feature.unit_plural or "",
    }


def feature_data(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    names = FEATURE_FIELDS if creating else ("name", "description", "unitSingular", "unitPlural")
    data: dict[str, Any] = {}
    for name in names:
        value = values.get(name) or None
        if creating:
            _optional(data, name, value)
        else:
            data[name] = value  # an emptied optional field is cleared
    if not creating and data.get("name") is None:
        data["name"] = ""  # name is required: let validation say so next to the field
    return data


PRODUCT_FIELDS = ("id", "name", "description")


def product_values(form: FormData | None = None, product: s.ProductOut | None = None) -> dict[str, Any]:
    if form is not None:
        return _scalars(form, PRODUCT_FIELDS)
    if product is None:
        return dict.fromkeys(PRODUCT_FIELDS, "")
    return {"id": product.id, "name": product.name, "description": product.description or ""}


def product_data(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": values.get("name") or "",
        "description": values.get("description") or None,
    }
    if creating:
        data["id"] = values.get("id") or ""
        if data["description"] is None:
            del data["description"]
    return data


COUPON_FIELDS = (
    "id",
    "name",
    "description",
    "percentOff",
    "amountOff",
    "currency",
    "duration",
    "durationInMonths",
)


def coupon_values(form: FormData | None = None, coupon: s.CouponOut | None = None) -> dict[str, Any]:
    if form is not None:
        return _scalars(form, COUPON_FIELDS)
    if coupon is None:
        return dict.fromkeys(COUPON_FIELDS, "") | {"duration": "ONCE"}
    return {
        "id": coupon.id,
        "name": coupon.name,
        "description": coupon.description or "",
        "percentOff": f"{coupon.percent_off:g}" if coupon.percent_off is not None else "",
        "amountOff": to_major_units(coupon.amount_off, coupon.currency),
        "currency": (coupon.currency or "").upper(),
        "duration": coupon.duration.value,
        "durationInMonths": str(coupon.duration_in_months or ""),
    }


def coupon_data(values: dict[str, Any], errors: Errors, *, creating: bool) -> dict[str, Any]:
    if not creating:
        return {"name": values.get("name") or "", "description": values.get("description") or None}
    data: dict[str, Any] = {"id": values.get("id") or "", "name": values.get("name") or ""}
    _optional(data, "description", values.get("description"))
    _optional(data, "duration", values.get("duration"))
    _optional(data, "percentOff", values.get("percentOff"))
    currency = values.get("currency") or None
    _optional(data, "currency", currency)
    _optional(data, "amountOff", _amount(values.get("amountOff", ""), currency, "amountOff", errors))
    _optional(
        data,
        "durationInMonths",
        _whole_number(values.get("durationInMonths", ""), "durationInMonths", errors),
    )
    return data


# ---- plans and add-ons -----------------------------------------------------------------------

PLAN_FIELDS = (
    "id",
    "productId",
    "name",
    "description",
    "pricingType",
    "displayOrder",
    "parentPlanId",
    "trialDays",
    "trialEndBehavior",
    "maxQuantity",
)


def _rows(form: FormData, prefix: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for index in row_indexes(form, prefix):
        row = {f: str(form.get(f"{prefix}[{index}].{f}") or "").strip() for f in fields}
        rows.append(row)
    return rows


def priced_values_from_form(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = _scalars(form, PLAN_FIELDS)
    values["recommended"] = checked(form, "recommended")
    values["compatibleAddonIds"] = all_values(form, "compatibleAddonIds")
    entitlements = _rows(form, "entitlements", ENTITLEMENT_FIELDS)
    charges = _rows(form, "charges", CHARGE_FIELDS)
    # Blank rows are the spare lines of the form: drop them so row numbers match the errors.
    values["entitlements"] = [r for r in entitlements if r["featureId"]]
    values["charges"] = [r for r in charges if r["amount"] or r["featureId"] or r["tiers"]]
    return values


def _entitlement_values(items: list[s.EntitlementOut]) -> list[dict[str, str]]:
    return [
        {
            "featureId": e.feature_id,
            "usageLimit": "" if e.usage_limit is None else str(e.usage_limit),
            "unlimited": "on" if e.unlimited else "",
            "hasSoftLimit": "on" if e.has_soft_limit else "",
            "resetPeriod": e.reset_period.value if e.reset_period else "",
        }
        for e in items
    ]


def _tiers_text(charge: s.ChargeOut) -> str:
    if not charge.tiers:
        return ""
    lines = []
    for tier in charge.tiers:
        up_to = "" if tier.up_to is None else str(tier.up_to)
        unit = to_major_units(tier.unit_amount, charge.currency)
        flat = to_major_units(tier.flat_amount, charge.currency)
        lines.append(f"{up_to}, {unit}, {flat}")
    return "\n".join(lines)


def _charge_values(items: list[s.ChargeOut]) -> list[dict[str, str]]:
    return [
        {
            "billingPeriod": c.billing_period.value,
            "currency": c.currency.upper(),
            "billingModel": c.billing_model.value,
            "amount": to_major_units(c.amount, c.currency),
            "featureId": c.feature_id or "",
            "tiersMode": c.tiers_mode.value if c.tiers_mode else "",
            "tiers": _tiers_text(c),
            "minQuantity": "" if c.min_quantity is None else str(c.min_quantity),
            "maxQuantity": "" if c.max_quantity is None else str(c.max_quantity),
        }
        for c in items
    ]


def plan_values(plan: s.PlanOut | None = None) -> dict[str, Any]:
    if plan is None:
        return dict.fromkeys(PLAN_FIELDS, "") | {
            "pricingType": "PAID",
            "trialEndBehavior": "CONVERT_TO_PAID",
            "recommended": False,
            "compatibleAddonIds": [],
            "entitlements": [],
            "charges": [],
        }
    return {
        "id": plan.id,
        "productId": plan.product_id,
        "name": plan.name,
        "description": plan.description or "",
        "pricingType": plan.pricing_type.value,
        "displayOrder": str(plan.display_order),
        "parentPlanId": plan.parent_plan_id or "",
        "trialDays": str(plan.default_trial.duration_days) if plan.default_trial else "",
        "trialEndBehavior": plan.default_trial.trial_end_behavior.value
        if plan.default_trial
        else "CONVERT_TO_PAID",
        "maxQuantity": "",
        "recommended": plan.recommended,
        "compatibleAddonIds": list(plan.compatible_addon_ids),
        "entitlements": _entitlement_values(plan.entitlements),
        "charges": _charge_values(plan.charges),
    }


def addon_values(addon: s.AddonOut | None = None) -> dict[str, Any]:
    if addon is None:
        return plan_values() | {"maxQuantity": ""}
    return {
        "id": addon.id,
        "productId": addon.product_id,
        "name": addon.name,
        "description": addon.description or "",
        "pricingType": addon.pricing_type.value,
        "displayOrder": str(addon.display_order),
        "parentPlanId": "",
        "trialDays": "",
        "trialEndBehavior": "CONVERT_TO_PAID",
        "maxQuantity": "" if addon.max_quantity is None else str(addon.max_quantity),
        "recommended": False,
        "compatibleAddonIds": [],
        "entitlements": _entitlement_values(addon.entitlements),
        "charges": _charge_values(addon.charges),
    }


def _parse_tiers(textarea: str, currency: str, key: str, errors: Errors) -> list[dict[str, Any]] | None:
    """One tier a line: `up to, unit price, flat price`; the last line's `up to` is empty."""
    tiers = []
    for line in filter(None, (line.strip() for line in textarea.splitlines())):
        parts = [p.strip() for p in line.split(",")] + ["", ""]
        try:
            tiers.append(
                {
                    "upTo": int(parts[0]) if parts[0] not in ("", "∞", "inf") else None,
                    "unitAmount": to_minor_units(parts[1] or "0", currency),
                    "flatAmount": to_minor_units(parts[2] or "0", currency),
                }
            )
        except ValueError:
            errors[key] = (
                "Write each tier as: up to, unit price, flat price (leave 'up to' empty on the last)."
            )
            return None
    return tiers or None


def _entitlements_data(rows: list[dict[str, str]], errors: Errors) -> list[dict[str, Any]]:
    items = []
    for index, row in enumerate(rows):
        item: dict[str, Any] = {"featureId": row["featureId"]}
        _optional(
            item, "usageLimit", _whole_number(row["usageLimit"], f"entitlements[{index}].usageLimit", errors)
        )
        item["unlimited"] = row["unlimited"] == "on"
        item["hasSoftLimit"] = row["hasSoftLimit"] == "on"
        _optional(item, "resetPeriod", row["resetPeriod"])
        items.append(item)
    return items


def _charges_data(rows: list[dict[str, str]], errors: Errors) -> list[dict[str, Any]]:
    items = []
    for index, row in enumerate(rows):
        key = f"charges[{index}]"
        currency = row["currency"]
        item: dict[str, Any] = {
            "billingPeriod": row["billingPeriod"],
            "currency": currency,
            "billingModel": row["billingModel"],
        }
        _optional(item, "amount", _amount(row["amount"], currency, f"{key}.amount", errors))
        _optional(item, "featureId", row["featureId"])
        _optional(item, "tiersMode", row["tiersMode"])
        if row["tiers"]:
            _optional(item, "tiers", _parse_tiers(row["tiers"], currency, f"{key}.tiers", errors))
        _optional(item, "minQuantity", _whole_number(row["minQuantity"], f"{key}.minQuantity", errors))
        _optional(item, "maxQuantity", _whole_number(row["maxQuantity"], f"{key}.maxQuantity", errors))
        items.append(item)
    return items


def plan_data(values: dict[str, Any], errors: Errors, *, creating: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": values["name"], "pricingType": values["pricingType"]}
    if creating:
        data["id"] = values["id"]
        data["productId"] = values["productId"]
    data["description"] = values["description"] or None
    data["displayOrder"] = _whole_number(values["displayOrder"], "displayOrder", errors) or 0
    data["recommended"] = bool(values["recommended"])
    data["parentPlanId"] = values["parentPlanId"] or None
    trial_days = _whole_number(values["trialDays"], "trialDays", errors)
    data["defaultTrial"] = (
        {"durationDays": trial_days, "trialEndBehavior": values["trialEndBehavior"] or "CONVERT_TO_PAID"}
        if trial_days is not None
        else None
    )
    data["entitlements"] = _entitlements_data(values["entitlements"], errors)
    data["charges"] = _charges_data(values["charges"], errors)
    data["compatibleAddonIds"] = values["compatibleAddonIds"]
    return data


def addon_data(values: dict[str, Any], errors: Errors, *, creating: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": values["name"], "pricingType": values["pricingType"]}
    if creating:
        data["id"] = values["id"]
        data["productId"] = values["productId"]
    data["description"] = values["description"] or None
    data["displayOrder"] = _whole_number(values["displayOrder"], "displayOrder", errors) or 0
    data["maxQuantity"] = _whole_number(values["maxQuantity"], "maxQuantity", errors)
    data["entitlements"] = _entitlements_data(values["entitlements"], errors)
    data["charges"] = _charges_data(values["charges"], errors)
    return data
