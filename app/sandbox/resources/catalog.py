"""Products, prices, coupons, promotion codes, tax rates and tax settings."""

from __future__ import annotations

from typing import Any

from app.sandbox.core import Ctx, apply_metadata, changed_fields, route, unset
from app.sandbox.fixtures import shaped
from app.sandbox.wire import StripeError, new_id


def _deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj["id"], "object": obj["object"], "deleted": True}


def _update(ctx: Ctx, obj: dict[str, Any], params: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    before = dict(obj)
    for name in fields:
        if name in params:
            obj[name] = unset(params[name])
    if "metadata" in params:
        obj["metadata"] = apply_metadata(obj.get("metadata"), params["metadata"])
    return changed_fields(before, obj)


# -- products ---------------------------------------------------------------------------------
_PRODUCT_FIELDS = (
    "name",
    "description",
    "active",
    "images",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
    "shippable",
)


@route("POST", "/v1/products", "ProductCreateParams")
def create_product(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    now = ctx.now()
    product = shaped(
        "product",
        id=params.get("id") or new_id("prod_", 14),
        created=now,
        updated=now,
        name=params["name"],
        active=params.get("active", True),
        description=params.get("description"),
        images=params.get("images", []),
        metadata=apply_metadata({}, params.get("metadata")),
        tax_code=params.get("tax_code"),
        unit_label=params.get("unit_label"),
        url=params.get("url"),
        statement_descriptor=params.get("statement_descriptor"),
        marketing_features=params.get("marketing_features", []),
        type="service",
    )
    if ctx.find("product", product["id"]):
        raise StripeError(400, "Product already exists.", code="resource_already_exists", param="id")
    ctx.put(product)
    ctx.emit("product.created", product)
    if "default_price_data" in params:
        price = _new_price(ctx, {**params["default_price_data"], "product": product["id"]})
        product["default_price"] = price["id"]
        ctx.put(product)
    return product


@route("GET", "/v1/products/{id}", "ProductRetrieveParams")
def retrieve_product(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("product", path["id"])


@route("POST", "/v1/products/{id}", "ProductUpdateParams")
def update_product(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    product = ctx.get("product", path["id"])
    previous = _update(ctx, product, params, (*_PRODUCT_FIELDS, "marketing_features"))
    if "default_price" in params:
        price_id = unset(params["default_price"])
        if price_id:
            ctx.get("price", price_id, "default_price")
        previous["default_price"] = product.get("default_price")
        product["default_price"] = price_id
    product["updated"] = ctx.now()
    ctx.put(product)
    ctx.emit("product.updated", product, previous)
    return product


@route("GET", "/v1/products", "ProductListParams")
def list_products(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(product: dict[str, Any]) -> bool:
        if "active" in params and product["active"] != params["active"]:
            return False
        return not ("ids" in params and product["id"] not in params["ids"])

    return ctx.page("product", params, "/v1/products", keep, ("active", "ids"))


@route("DELETE", "/v1/products/{id}", "ProductDeleteParams")
def delete_product(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    product = ctx.get("product", path["id"])
    if any(p["product"] == product["id"] for p in ctx.all("price")):
        raise StripeError(
            400, "This product cannot be deleted because it has one or more user-created prices."
        )
    ctx.delete(product["id"])
    ctx.emit("product.deleted", product)
    return _deleted(product)


# -- prices -----------------------------------------------------------------------------------
def _new_price(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    product_id = params.get("product")
    if "product_data" in params:
        product_id = create_product(ctx, params["product_data"], {})["id"]
    if not product_id:
        raise StripeError(400, "Missing required param: product.", code="parameter_missing", param="product")
    ctx.get("product", product_id, "product")
    scheme = params.get("billing_scheme", "per_unit")
    unit_amount = params.get("unit_amount")
    if unit_amount is None and params.get("unit_amount_decimal") is not None:
        unit_amount = int(float(params["unit_amount_decimal"]))
    tiers = None
    if scheme == "tiered":
        if not params.get("tiers") or not params.get("tiers_mode"):
            raise StripeError(400, "Tiered prices need `tiers` and `tiers_mode`.", param="tiers")
        tiers = [
            {
                "flat_amount": t.get("flat_amount"),
                "flat_amount_decimal": str(t["flat_amount"]) if t.get("flat_amount") is not None else None,
                "unit_amount": t.get("unit_amount"),
                "unit_amount_decimal": str(t["unit_amount"]) if t.get("unit_amount") is not None else None,
                "up_to": None if t.get("up_to") == "inf" else int(t["up_to"]),
            }
            for t in params["tiers"]
        ]
    elif unit_amount is None and "custom_unit_amount" not in params:
        raise StripeError(
            400, "Missing required param: unit_amount.", code="parameter_missing", param="unit_amount"
        )
    recurring = None
    if "recurring" in params:
        rec = params["recurring"]
        recurring = {
            "interval": rec["interval"],
            "interval_count": rec.get("interval_count", 1),
            "meter": rec.get("meter"),
            "trial_period_days": rec.get("trial_period_days"),
            "usage_type": rec.get("usage_type", "licensed"),
        }
    lookup_key = params.get("lookup_key")
    if lookup_key:
        holders = [p for p in ctx.all("price") if p.get("lookup_key") == lookup_key]
        if holders and not params.get("transfer_lookup_key"):
            raise StripeError(
                400,
                f"A price (`{holders[0]['id']}`) already uses that lookup key.",
                param="lookup_key",
            )
        for holder in holders:
            holder["lookup_key"] = None
            ctx.put(holder)
    price = shaped(
        "price",
        id=new_id("price_"),
        created=ctx.now(),
        active=params.get("active", True),
        billing_scheme=scheme,
        currency=params["currency"].lower(),
        lookup_key=lookup_key,
        metadata=apply_metadata({}, params.get("metadata")),
        nickname=params.get("nickname"),
        product=product_id,
        recurring=recurring,
        tax_behavior=params.get("tax_behavior", "unspecified"),
        tiers_mode=params.get("tiers_mode") if tiers else None,
        type="recurring" if recurring else "one_time",
        unit_amount=unit_amount if scheme == "per_unit" else None,
        unit_amount_decimal=str(unit_amount) if scheme == "per_unit" and unit_amount is not None else None,
    )
    if tiers is not None:
        price["tiers"] = tiers
    ctx.put(price)
    ctx.emit("price.created", price)
    return price


@route("POST", "/v1/prices", "PriceCreateParams")
def create_price(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    return _new_price(ctx, params)


@route("GET", "/v1/prices/{id}", "PriceRetrieveParams")
def retrieve_price(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("price", path["id"])


@route("POST", "/v1/prices/{id}", "PriceUpdateParams")
def update_price(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    price = ctx.get("price", path["id"])
    previous = _update(ctx, price, params, ("active", "nickname", "tax_behavior"))
    if "lookup_key" in params:
        key = unset(params["lookup_key"])
        for holder in ctx.all("price"):
            if key and holder["id"] != price["id"] and holder.get("lookup_key") == key:
                if not params.get("transfer_lookup_key"):
                    raise StripeError(
                        400, f"A price (`{holder['id']}`) already uses that lookup key.", param="lookup_key"
                    )
                holder["lookup_key"] = None
                ctx.put(holder)
        previous["lookup_key"] = price.get("lookup_key")
        price["lookup_key"] = key
    ctx.put(price)
    ctx.emit("price.updated", price, previous)
    return price


@route("GET", "/v1/prices", "PriceListParams")
def list_prices(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(price: dict[str, Any]) -> bool:
        if "active" in params and price["active"] != params["active"]:
            return False
        if "product" in params and price["product"] != params["product"]:
            return False
        if "currency" in params and price["currency"] != params["currency"]:
            return False
        if "type" in params and price["type"] != params["type"]:
            return False
        if "lookup_keys" in params and price.get("lookup_key") not in params["lookup_keys"]:
            return False
        recurring = params.get("recurring")
        return not (
            recurring
            and (
                not price["recurring"]
                or price["recurring"]["interval"] != recurring.get("interval", price["recurring"]["interval"])
            )
        )

    return ctx.page(
        "price",
        params,
        "/v1/prices",
        keep,
        ("active", "product", "currency", "type", "lookup_keys", "recurring"),
    )


def price_amount(price: dict[str, Any], quantity: int) -> int:
    """The amount of `quantity` units of a price, in minor units (per unit or tiered)."""
    if price["billing_scheme"] != "tiered":
        return int(price.get("unit_amount") or 0) * quantity
    tiers = price.get("tiers") or []
    if price.get("tiers_mode") == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return (tier.get("unit_amount") or 0) * quantity + (tier.get("flat_amount") or 0)
        return 0
    total, lower = 0, 0
    for tier in tiers:
        if quantity <= lower:
            break
        upper = tier["up_to"] if tier["up_to"] is not None else quantity
        units = min(quantity, upper) - lower
        total += (tier.get("unit_amount") or 0) * units + (tier.get("flat_amount") or 0)
        lower = upper
    return total


# -- coupons ----------------------------------------------------------------------------------
@route("POST", "/v1/coupons", "CouponCreateParams")
def create_coupon(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    if ("percent_off" in params) == ("amount_off" in params):
        raise StripeError(400, "You must pass exactly one of percent_off or amount_off.", param="percent_off")
    if "amount_off" in params and not params.get("currency"):
        raise StripeError(400, "You must pass currency when passing amount_off.", param="currency")
    duration = params.get("duration", "once")
    if duration == "repeating" and not params.get("duration_in_months"):
        raise StripeError(
            400, "You must pass duration_in_months when duration is repeating.", param="duration_in_months"
        )
    coupon_id = params.get("id") or new_id("", 8)
    if ctx.find("coupon", coupon_id):
        raise StripeError(400, "Coupon already exists.", code="resource_already_exists", param="id")
    coupon = shaped(
        "coupon",
        id=coupon_id,
        created=ctx.now(),
        amount_off=params.get("amount_off"),
        currency=params.get("currency", "").lower() or None,
        duration=duration,
        duration_in_months=params.get("duration_in_months"),
        max_redemptions=params.get("max_redemptions"),
        metadata=apply_metadata({}, params.get("metadata")),
        name=params.get("name"),
        percent_off=params.get("percent_off"),
        redeem_by=params.get("redeem_by"),
        times_redeemed=0,
        valid=True,
    )
    if "applies_to" in params:
        coupon["applies_to"] = {"products": params["applies_to"].get("products", [])}
    ctx.put(coupon)
    ctx.emit("coupon.created", coupon)
    return coupon


@route("GET", "/v1/coupons/{id}", "CouponRetrieveParams")
def retrieve_coupon(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("coupon", path["id"])


@route("POST", "/v1/coupons/{id}", "CouponUpdateParams")
def update_coupon(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    coupon = ctx.get("coupon", path["id"])
    previous = _update(ctx, coupon, params, ("name",))
    ctx.put(coupon)
    ctx.emit("coupon.updated", coupon, previous)
    return coupon


@route("GET", "/v1/coupons", "CouponListParams")
def list_coupons(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    return ctx.page("coupon", params, "/v1/coupons")


@route("DELETE", "/v1/coupons/{id}", "CouponDeleteParams")
def delete_coupon(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    coupon = ctx.get("coupon", path["id"])
    ctx.delete(coupon["id"])
    ctx.emit("coupon.deleted", coupon)
    return _deleted(coupon)


def coupon_discount(coupon: dict[str, Any], amount: int) -> int:
    if coupon.get("percent_off") is not None:
        return round(amount * float(coupon["percent_off"]) / 100)
    return min(amount, int(coupon.get("amount_off") or 0))


# -- promotion codes --------------------------------------------------------------------------
@route("POST", "/v1/promotion_codes", "PromotionCodeCreateParams")
def create_promotion_code(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    promotion = params["promotion"]
    coupon = ctx.get("coupon", promotion.get("coupon", ""), "promotion[coupon]")
    code = params.get("code") or new_id("", 8).upper()
    if any(p["code"].lower() == code.lower() and p["active"] for p in ctx.all("promotion_code")):
        raise StripeError(400, "An active promotion code with `code` already exists.", param="code")
    restrictions = params.get("restrictions", {})
    promo = shaped(
        "promotion_code",
        id=new_id("promo_"),
        created=ctx.now(),
        active=params.get("active", True),
        code=code,
        customer=params.get("customer"),
        expires_at=params.get("expires_at"),
        max_redemptions=params.get("max_redemptions"),
        metadata=apply_metadata({}, params.get("metadata")),
        promotion={"coupon": coupon["id"], "type": "coupon"},
        restrictions={
            "first_time_transaction": restrictions.get("first_time_transaction", False),
            "minimum_amount": restrictions.get("minimum_amount"),
            "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
        },
        times_redeemed=0,
    )
    ctx.put(promo)
    ctx.emit("promotion_code.created", promo)
    return promo


@route("GET", "/v1/promotion_codes/{id}", "PromotionCodeRetrieveParams")
def retrieve_promotion_code(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("promotion_code", path["id"])


@route("POST", "/v1/promotion_codes/{id}", "PromotionCodeUpdateParams")
def update_promotion_code(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    promo = ctx.get("promotion_code", path["id"])
    previous = _update(ctx, promo, params, ("active",))
    ctx.put(promo)
    ctx.emit("promotion_code.updated", promo, previous)
    return promo


@route("GET", "/v1/promotion_codes", "PromotionCodeListParams")
def list_promotion_codes(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(promo: dict[str, Any]) -> bool:
        if "active" in params and promo["active"] != params["active"]:
            return False
        if "code" in params and promo["code"] != params["code"]:
            return False
        return not ("coupon" in params and promo["promotion"]["coupon"] != params["coupon"])

    return ctx.page("promotion_code", params, "/v1/promotion_codes", keep)


# -- tax rates and settings -------------------------------------------------------------------
@route("POST", "/v1/tax_rates", "TaxRateCreateParams")
def create_tax_rate(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    rate = shaped(
        "tax_rate",
        id=new_id("txr_"),
        created=ctx.now(),
        active=params.get("active", True),
        country=params.get("country"),
        description=params.get("description"),
        display_name=params["display_name"],
        inclusive=params["inclusive"],
        jurisdiction=params.get("jurisdiction"),
        metadata=apply_metadata({}, params.get("metadata")),
        percentage=params["percentage"],
        effective_percentage=params["percentage"],
        state=params.get("state"),
        tax_type=params.get("tax_type"),
        rate_type="percentage",
    )
    ctx.put(rate)
    ctx.emit("tax_rate.created", rate)
    return rate


@route("GET", "/v1/tax_rates/{id}", "TaxRateRetrieveParams")
def retrieve_tax_rate(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("tax_rate", path["id"])


@route("POST", "/v1/tax_rates/{id}", "TaxRateUpdateParams")
def update_tax_rate(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    rate = ctx.get("tax_rate", path["id"])
    previous = _update(
        ctx,
        rate,
        params,
        ("active", "country", "description", "display_name", "jurisdiction", "state", "tax_type"),
    )
    ctx.put(rate)
    ctx.emit("tax_rate.updated", rate, previous)
    return rate


@route("GET", "/v1/tax_rates", "TaxRateListParams")
def list_tax_rates(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(rate: dict[str, Any]) -> bool:
        if "active" in params and rate["active"] != params["active"]:
            return False
        return not ("inclusive" in params and rate["inclusive"] != params["inclusive"])

    return ctx.page("tax_rate", params, "/v1/tax_rates", keep)


TAX_SETTINGS_ID = "tax_settings"


def tax_settings(ctx: Ctx) -> dict[str, Any]:
    settings = ctx.store.get(ctx.account, TAX_SETTINGS_ID, "tax.settings")
    if settings is None:
        settings = shaped(
            "tax.settings",
            defaults={"tax_behavior": None, "tax_code": None, "provider": "stripe"},
            head_office=None,
            status="pending",
            status_details={"active": None, "pending": {"missing_fields": ["head_office"]}},
        )
    return settings


@route("GET", "/v1/tax/settings", "tax.SettingsRetrieveParams")
def retrieve_tax_settings(ctx: Ctx, _: dict[str, Any], __: dict[str, str]) -> dict[str, Any]:
    return tax_settings(ctx)


@route("POST", "/v1/tax/settings", "tax.SettingsUpdateParams")
def update_tax_settings(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    settings = tax_settings(ctx)
    before = dict(settings)
    if "defaults" in params:
        settings["defaults"] = {**settings["defaults"], **params["defaults"]}
    if "head_office" in params:
        address = params["head_office"].get("address", {})
        settings["head_office"] = {
            "address": {
                k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")
            }
        }
    if settings.get("head_office") and settings["head_office"]["address"].get("country"):
        settings["status"] = "active"
        settings["status_details"] = {"active": {}, "pending": None}
    ctx.store.put(ctx.account, "tax.settings", settings, TAX_SETTINGS_ID)
    ctx.emit("tax.settings.updated", settings, changed_fields(before, settings))
    return settings


# Stripe Tax's answer in the sandbox: a standard VAT/GST rate for a few countries, else none.
AUTOMATIC_TAX_PERCENT = {"DE": 19.0, "FR": 20.0, "GB": 20.0, "NL": 21.0, "IE": 23.0, "AU": 10.0, "CA": 5.0}


def require_stripe_tax(ctx: Ctx, requested: bool, param: str) -> None:
    """Automatic tax needs Stripe Tax to be active (a head office in the tax settings)."""
    if requested and tax_settings(ctx)["status"] != "active":
        raise StripeError(
            400,
            "Stripe Tax has not been activated on your account. Please visit https://stripe.com/docs/tax/set-up to get started.",
            param=param,
        )


def automatic_tax_percent(ctx: Ctx, country: str | None) -> float | None:
    """The rate Stripe Tax would apply, or None when Stripe Tax is not active."""
    if tax_settings(ctx)["status"] != "active":
        return None
    return AUTOMATIC_TAX_PERCENT.get((country or "").upper(), 0.0)


# -- plans (Stripe's older face of recurring prices: a plan id is its price id) -----------------
@route("POST", "/v1/plans", "PlanCreateParams")
def create_plan(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    from app.sandbox.resources.billing import _plan_view

    product = params.get("product")
    price_params: dict[str, Any] = {
        "currency": params["currency"],
        "recurring": {
            "interval": params["interval"],
            "interval_count": params.get("interval_count", 1),
            "usage_type": params.get("usage_type", "licensed"),
        },
        "nickname": params.get("nickname"),
        "metadata": params.get("metadata") or {},
        "active": params.get("active", True),
    }
    if params.get("trial_period_days") is not None:
        price_params["recurring"]["trial_period_days"] = params["trial_period_days"]
    if isinstance(product, dict):
        price_params["product_data"] = {"name": product["name"]}
    else:
        price_params["product"] = product
    if params.get("billing_scheme") == "tiered":
        price_params.update(
            billing_scheme="tiered", tiers=params.get("tiers"), tiers_mode=params.get("tiers_mode")
        )
    else:
        price_params["unit_amount"] = params.get("amount", 0)
    return _plan_view(_new_price(ctx, price_params))


@route("GET", "/v1/plans/{id}", "PlanRetrieveParams")
def retrieve_plan(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    from app.sandbox.resources.billing import _plan_view

    price = ctx.get("price", path["id"])
    if not price["recurring"]:
        raise StripeError(404, f"No such plan: '{path['id']}'", code="resource_missing", param="id")
    return _plan_view(price)
