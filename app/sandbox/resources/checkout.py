"""Checkout sessions, billing portal configurations and sessions, and paying a session."""

from __future__ import annotations

from typing import Any

from app.sandbox.core import Ctx, apply_metadata, route, unset
from app.sandbox.fixtures import shaped
from app.sandbox.resources.billing import create_subscription
from app.sandbox.resources.catalog import (
    automatic_tax_percent,
    coupon_discount,
    price_amount,
    require_stripe_tax,
)
from app.sandbox.resources.customers import (
    attach_payment_method,
    card_payment_method,
    create_customer,
    create_setup_intent,
    create_tax_id,
    update_customer,
)
from app.sandbox.wire import StripeError, new_id, paginate

SESSION_LIFETIME_SECONDS = 24 * 3600


def _session_lines(ctx: Ctx, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = []
    from app.sandbox.resources.catalog import _new_price

    for index, spec in enumerate(specs):
        if spec.get("price_data"):
            # Inline prices (and products) are created on the fly, as Stripe does.
            data = dict(spec["price_data"])
            if "product_data" in data:
                data["product_data"] = {"name": data["product_data"]["name"]}
            price = _new_price(ctx, data)
        else:
            price = ctx.get("price", spec.get("price", ""), f"line_items[{index}][price]")
        quantity = spec.get("quantity", 1)
        product = ctx.find("product", price["product"]) or {"name": price["product"]}
        amount = price_amount(price, quantity)
        line = shaped(
            "item",
            id=new_id("li_"),
            amount_discount=0,
            amount_subtotal=amount,
            amount_tax=0,
            amount_total=amount,
            currency=price["currency"],
            description=product["name"],
            price=price,
            quantity=quantity,
            metadata={},
        )
        line["adjustable_quantity"] = None
        lines.append(line)
    return lines


def session_totals(ctx: Ctx, session: dict[str, Any], country: str | None = None) -> dict[str, int]:
    """Subtotal, discount, tax and total of a session (tax once the buyer's country is known)."""
    lines = session["_line_items"]
    subtotal = sum(line["amount_subtotal"] for line in lines)
    discount = 0
    for spec in session.get("_discounts") or []:
        coupon_id = spec.get("coupon")
        if spec.get("promotion_code"):
            promo = ctx.find("promotion_code", spec["promotion_code"])
            coupon_id = promo["promotion"]["coupon"] if promo else None
        coupon = ctx.find("coupon", coupon_id)
        if coupon:
            discount += coupon_discount(coupon, subtotal - discount)
    tax = 0
    if session["automatic_tax"]["enabled"]:
        percent = automatic_tax_percent(ctx, country)
        if percent:
            tax = round((subtotal - discount) * percent / 100)
    trial = bool(
        (session.get("_subscription_data") or {}).get("trial_period_days")
        or (session.get("_subscription_data") or {}).get("trial_end")
    )
    due_now = 0 if trial else subtotal - discount + tax
    return {
        "subtotal": subtotal,
        "discount": discount,
        "tax": tax,
        "total": subtotal - discount + tax,
        "due_now": due_now,
    }


@route("POST", "/v1/checkout/sessions", "checkout.SessionCreateParams")
def create_session(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    mode = params.get("mode")
    if mode not in {"subscription", "setup"}:
        raise StripeError(
            400, "The sandbox's Checkout supports `mode=subscription` and `mode=setup`.", param="mode"
        )
    if params.get("ui_mode", "hosted") == "hosted" and not params.get("success_url"):
        raise StripeError(
            400, "Missing required param: success_url.", code="parameter_missing", param="success_url"
        )
    if params.get("customer") and params.get("customer_email"):
        raise StripeError(
            400,
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    if params.get("customer"):
        ctx.get("customer", params["customer"], "customer")
    if params.get("allow_promotion_codes") and params.get("discounts"):
        raise StripeError(
            400,
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="discounts",
        )
    line_specs = params.get("line_items") or []
    if mode == "subscription" and not line_specs:
        raise StripeError(400, "You must provide `line_items` in `subscription` mode.", param="line_items")
    lines = _session_lines(ctx, line_specs)
    for index, line in enumerate(lines):
        if mode == "subscription" and not line["price"]["recurring"]:
            raise StripeError(
                400,
                "You must provide at least one recurring price in `subscription` mode when using prices.",
                param=f"line_items[{index}][price]",
            )
    for index, spec in enumerate(params.get("discounts") or []):
        if spec.get("coupon"):
            ctx.get("coupon", spec["coupon"], f"discounts[{index}][coupon]")
        if spec.get("promotion_code"):
            ctx.get("promotion_code", spec["promotion_code"], f"discounts[{index}][promotion_code]")
    now = ctx.now()
    session_id = new_id("cs_test_", 58)
    automatic_tax = bool((params.get("automatic_tax") or {}).get("enabled"))
    require_stripe_tax(ctx, automatic_tax, "automatic_tax[enabled]")
    customer = ctx.find("customer", params.get("customer"))
    session = shaped(
        "checkout.session",
        id=session_id,
        allow_promotion_codes=params.get("allow_promotion_codes"),
        billing_address_collection=params.get("billing_address_collection"),
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"),
        created=now,
        currency=(lines[0]["currency"] if lines else params.get("currency")),
        customer=params.get("customer"),
        customer_creation="always" if mode != "subscription" and not params.get("customer") else None,
        customer_email=params.get("customer_email"),
        expires_at=params.get("expires_at") or now + SESSION_LIFETIME_SECONDS,
        locale=params.get("locale"),
        metadata=apply_metadata({}, params.get("metadata")),
        mode=mode,
        payment_method_collection=params.get("payment_method_collection", "always"),
        payment_method_types=params.get("payment_method_types", ["card"]),
        payment_status="no_payment_required" if mode == "setup" else "unpaid",
        status="open",
        success_url=params.get("success_url"),
        ui_mode=params.get("ui_mode", "hosted"),
        url=f"{ctx.sandbox.public_url}/checkout/{session_id}",
    )
    session["automatic_tax"] = {
        "enabled": automatic_tax,
        "liability": {"type": "self"} if automatic_tax else None,
        "status": "requires_location_inputs" if automatic_tax else None,
        "provider": "stripe" if automatic_tax else None,
    }
    session["tax_id_collection"] = {
        "enabled": bool((params.get("tax_id_collection") or {}).get("enabled")),
        "required": "never",
    }
    session["customer_details"] = (
        {**session["customer_details"], "email": customer.get("email"), "name": customer.get("name")}
        if customer
        else None
    )
    session["discounts"] = [
        {"coupon": d.get("coupon"), "promotion_code": d.get("promotion_code")}
        for d in params.get("discounts") or []
    ] or None
    session["_line_items"] = lines
    session["_discounts"] = params.get("discounts") or []
    session["_subscription_data"] = params.get("subscription_data") or {}
    totals = session_totals(ctx, session, ((customer or {}).get("address") or {}).get("country"))
    session["amount_subtotal"] = totals["subtotal"] if mode != "setup" else None
    session["amount_total"] = totals["total"] if mode != "setup" else None
    session["total_details"] = (
        {"amount_discount": totals["discount"], "amount_shipping": 0, "amount_tax": totals["tax"]}
        if mode != "setup"
        else None
    )
    ctx.put(session)
    return session


@route("GET", "/v1/checkout/sessions/{id}", "checkout.SessionRetrieveParams")
def retrieve_session(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    session = ctx.get("checkout.session", path["id"])
    if "line_items" in (params.get("expand") or []):
        session["line_items"] = {
            "object": "list",
            "data": session["_line_items"],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session['id']}/line_items",
        }
        params["expand"] = [e for e in params["expand"] if e != "line_items"]
    return session


@route("GET", "/v1/checkout/sessions/{id}/line_items", "checkout.SessionListLineItemsParams")
def list_session_line_items(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    session = ctx.get("checkout.session", path["id"])
    return paginate(
        session["_line_items"], params, f"/v1/checkout/sessions/{session['id']}/line_items", "line item"
    )


@route("GET", "/v1/checkout/sessions", "checkout.SessionListParams")
def list_sessions(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(session: dict[str, Any]) -> bool:
        for name in ("customer", "subscription", "status"):
            if name in params and session.get(name) != params[name]:
                return False
        return True

    return ctx.page("checkout.session", params, "/v1/checkout/sessions", keep)


@route("POST", "/v1/checkout/sessions/{id}/expire", "checkout.SessionExpireParams")
def expire_session(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    session = ctx.get("checkout.session", path["id"])
    if session["status"] != "open":
        raise StripeError(
            400,
            f"Only Checkout Sessions with a status of `open` can be expired. This Checkout Session has a status of `{session['status']}`.",
        )
    session["status"] = "expired"
    session["url"] = None
    ctx.put(session)
    ctx.emit("checkout.session.expired", session)
    return session


def complete_session(ctx: Ctx, session: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """Pay (or set up) a Checkout session with the card entered on the hosted page."""
    if session["status"] != "open" or session["expires_at"] <= ctx.now():
        raise StripeError(400, "This Checkout Session is no longer open.")
    email = (form.get("email") or session.get("customer_email") or "").strip()
    name = (form.get("name") or "").strip() or None
    address = {
        k: (form.get(f"address_{k}") or None)
        for k in ("line1", "line2", "city", "postal_code", "state", "country")
    }
    address["country"] = (address["country"] or "").upper() or None
    if session.get("billing_address_collection") == "required" and not (
        address["line1"] and address["country"]
    ):
        raise StripeError(400, "Your billing address is incomplete.", param="address")
    if not session.get("customer") and not email:
        raise StripeError(400, "Your email address is incomplete.", param="email")
    promo_code = (form.get("promotion_code") or "").strip()
    if promo_code:
        if not session.get("allow_promotion_codes"):
            raise StripeError(400, "This session does not accept promotion codes.", param="promotion_code")
        promo = next(
            (p for p in ctx.all("promotion_code") if p["code"].lower() == promo_code.lower() and p["active"]),
            None,
        )
        if promo is None:
            raise StripeError(400, "This code is invalid.", param="promotion_code")
        session["_discounts"] = [{"promotion_code": promo["id"]}]
    pm = None
    if (form.get("card_number") or "").strip() or not card_optional(ctx, session):
        pm = card_payment_method(
            ctx,
            form.get("card_number", ""),
            exp_month=int(form.get("exp_month") or 12),
            exp_year=int(form.get("exp_year") or 2034),
            billing={
                "email": email or None,
                "name": name,
                "address": address if address["country"] else None,
            },
        )
    customer_id = session.get("customer")
    if customer_id:
        if address["country"] or name:
            update_customer(
                ctx,
                {
                    k: v
                    for k, v in {"address": address if address["country"] else None, "name": name}.items()
                    if v
                },
                {"id": customer_id},
            )
    else:
        customer_id = create_customer(
            ctx,
            {
                k: v
                for k, v in {
                    "email": email,
                    "name": name,
                    "address": address if address["country"] else None,
                }.items()
                if v
            },
            {},
        )["id"]
    if pm is not None:
        attach_payment_method(ctx, {"customer": customer_id}, {"id": pm["id"]})
    customer = ctx.get("customer", customer_id)
    if pm is not None and not customer["invoice_settings"].get("default_payment_method"):
        customer = update_customer(
            ctx, {"invoice_settings": {"default_payment_method": pm["id"]}}, {"id": customer_id}
        )
    tax_id_value = (form.get("tax_id") or "").strip()
    tax_ids = []
    if tax_id_value and session["tax_id_collection"]["enabled"]:
        created = create_tax_id(
            ctx, {"type": form.get("tax_id_type") or "eu_vat", "value": tax_id_value}, {"id": customer_id}
        )
        tax_ids.append({"type": created["type"], "value": created["value"]})
    if session["mode"] == "subscription":
        data = session["_subscription_data"]
        params: dict[str, Any] = {
            "customer": customer_id,
            "items": [
                {"price": line["price"]["id"], "quantity": line["quantity"]}
                for line in session["_line_items"]
            ],
            "metadata": data.get("metadata") or {},
            "payment_behavior": "error_if_incomplete",
        }
        if pm is not None:
            params["default_payment_method"] = pm["id"]
        for name_ in ("trial_period_days", "trial_end", "description", "default_tax_rates", "trial_settings"):
            if data.get(name_) is not None:
                params[name_] = data[name_]
        if session["_discounts"]:
            params["discounts"] = session["_discounts"]
        if session["automatic_tax"]["enabled"]:
            params["automatic_tax"] = {"enabled": True}
        subscription = create_subscription(ctx, params, {})
        session["subscription"] = subscription["id"]
        session["invoice"] = subscription.get("latest_invoice")
        invoice = ctx.get("invoice", subscription["latest_invoice"])
        session["payment_status"] = "paid" if invoice["amount_due"] > 0 else "no_payment_required"
        session["amount_total"] = invoice["total"]
        session["amount_subtotal"] = invoice["subtotal"]
        session["total_details"] = {
            "amount_discount": sum(d["amount"] for d in invoice["total_discount_amounts"]),
            "amount_shipping": 0,
            "amount_tax": sum(t["amount"] for t in invoice.get("total_taxes") or []),
        }
        session["discounts"] = [
            {"coupon": None, "promotion_code": None, "discount": d}
            for d in subscription.get("discounts") or []
        ] or session["discounts"]
    else:
        assert pm is not None  # setup mode always collects a card (card_optional is False)
        intent = create_setup_intent(
            ctx, {"customer": customer_id, "payment_method": pm["id"], "confirm": True}, {}
        )
        session["setup_intent"] = intent["id"]
    if session["automatic_tax"]["enabled"]:
        session["automatic_tax"]["status"] = "complete"
    session.update(status="complete", customer=customer_id, url=None)
    session["customer_details"] = {
        "address": address if address["country"] else customer.get("address"),
        "email": email or customer.get("email"),
        "name": name or customer.get("name"),
        "phone": None,
        "tax_exempt": customer.get("tax_exempt") or "none",
        "tax_ids": tax_ids,
        "business_name": None,
        "individual_name": None,
    }
    ctx.put(session)
    ctx.emit("checkout.session.completed", session)
    return session


def card_optional(ctx: Ctx, session: dict[str, Any]) -> bool:
    """`payment_method_collection=if_required` skips the card when nothing is due now (a free trial)."""
    if session["mode"] != "subscription" or session.get("payment_method_collection") != "if_required":
        return False
    return session_totals(ctx, session)["due_now"] == 0


def success_redirect(session: dict[str, Any]) -> str:
    return (session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session["id"])


# -- billing portal ---------------------------------------------------------------------------
def _configuration(ctx: Ctx, params: dict[str, Any], is_default: bool) -> dict[str, Any]:
    now = ctx.now()
    features = params.get("features") or {}
    customer_update = features.get("customer_update") or {}
    cancel = features.get("subscription_cancel") or {}
    update = features.get("subscription_update") or {}
    config = shaped(
        "billing_portal.configuration",
        id=new_id("bpc_"),
        active=True,
        created=now,
        updated=now,
        default_return_url=params.get("default_return_url"),
        is_default=is_default,
        livemode=False,
        metadata=apply_metadata({}, params.get("metadata")),
        name=params.get("name"),
    )
    profile = params.get("business_profile") or {}
    config["business_profile"] = {
        k: profile.get(k) for k in ("headline", "privacy_policy_url", "terms_of_service_url")
    }
    config["features"] = {
        "customer_update": {
            "allowed_updates": unset(customer_update.get("allowed_updates")) or [],
            "enabled": bool(customer_update.get("enabled", False)),
        },
        "invoice_history": {"enabled": bool((features.get("invoice_history") or {}).get("enabled", False))},
        "payment_method_update": {
            "enabled": bool((features.get("payment_method_update") or {}).get("enabled", False)),
            "payment_method_configuration": None,
        },
        "subscription_cancel": {
            "cancellation_reason": {
                "enabled": bool((cancel.get("cancellation_reason") or {}).get("enabled", False)),
                "options": (cancel.get("cancellation_reason") or {}).get("options", []),
            },
            "enabled": bool(cancel.get("enabled", False)),
            "mode": cancel.get("mode", "at_period_end"),
            "proration_behavior": cancel.get("proration_behavior", "none"),
        },
        "subscription_update": {
            "default_allowed_updates": unset(update.get("default_allowed_updates")) or [],
            "enabled": bool(update.get("enabled", False)),
            "products": [
                {"prices": p.get("prices", []), "product": p["product"], "adjustable_quantity": None}
                for p in unset(update.get("products")) or []
            ],
            "proration_behavior": update.get("proration_behavior", "create_prorations"),
            "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
            "billing_cycle_anchor": None,
        },
    }
    config["login_page"] = {"enabled": False, "url": None}
    ctx.put(config)
    return config


def default_configuration(ctx: Ctx) -> dict[str, Any]:
    for config in ctx.all("billing_portal.configuration"):
        if config["is_default"]:
            return config
    return _configuration(
        ctx,
        {
            "features": {
                "customer_update": {
                    "enabled": True,
                    "allowed_updates": ["email", "address", "phone", "tax_id"],
                },
                "invoice_history": {"enabled": True},
                "payment_method_update": {"enabled": True},
                "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
            }
        },
        True,
    )


@route("POST", "/v1/billing_portal/configurations", "billing_portal.ConfigurationCreateParams")
def create_configuration(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    has_default = any(c["is_default"] for c in ctx.all("billing_portal.configuration"))
    return _configuration(ctx, params, not has_default)


@route("GET", "/v1/billing_portal/configurations/{id}", "billing_portal.ConfigurationRetrieveParams")
def retrieve_configuration(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("billing_portal.configuration", path["id"])


@route("POST", "/v1/billing_portal/configurations/{id}", "billing_portal.ConfigurationUpdateParams")
def update_configuration(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    config = ctx.get("billing_portal.configuration", path["id"])
    merged_features = {**_features_as_params(config), **(params.get("features") or {})}
    rebuilt = _configuration(
        ctx,
        {**params, "features": merged_features, "metadata": params.get("metadata", {})},
        config["is_default"],
    )
    ctx.delete(rebuilt["id"])
    rebuilt.update(
        id=config["id"],
        created=config["created"],
        metadata=apply_metadata(config.get("metadata"), params.get("metadata", {})),
        default_return_url=params.get("default_return_url", config.get("default_return_url")),
        active=params.get("active", config["active"]),
        business_profile=config["business_profile"]
        if "business_profile" not in params
        else rebuilt["business_profile"],
    )
    ctx.put(rebuilt)
    return rebuilt


def _features_as_params(config: dict[str, Any]) -> dict[str, Any]:
    features = config["features"]
    return {
        "customer_update": {k: features["customer_update"][k] for k in ("allowed_updates", "enabled")},
        "invoice_history": features["invoice_history"],
        "payment_method_update": {"enabled": features["payment_method_update"]["enabled"]},
        "subscription_cancel": {
            k: features["subscription_cancel"][k] for k in ("enabled", "mode", "proration_behavior")
        },
        "subscription_update": {
            k: features["subscription_update"][k]
            for k in ("default_allowed_updates", "enabled", "products", "proration_behavior")
        },
    }


@route("GET", "/v1/billing_portal/configurations", "billing_portal.ConfigurationListParams")
def list_configurations(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(config: dict[str, Any]) -> bool:
        if "active" in params and config["active"] != params["active"]:
            return False
        return not ("is_default" in params and config["is_default"] != params["is_default"])

    return ctx.page("billing_portal.configuration", params, "/v1/billing_portal/configurations", keep)


@route("POST", "/v1/billing_portal/sessions", "billing_portal.SessionCreateParams")
def create_portal_session(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    customer = ctx.get("customer", params.get("customer") or "", "customer")
    if params.get("configuration"):
        config = ctx.get("billing_portal.configuration", params["configuration"], "configuration")
    else:
        config = default_configuration(ctx)
    return_url = params.get("return_url") or config.get("default_return_url")
    if not return_url:
        raise StripeError(
            400, "Missing required param: return_url.", code="parameter_missing", param="return_url"
        )
    session_id = new_id("bps_")
    session = shaped(
        "billing_portal.session",
        id=session_id,
        configuration=config["id"],
        created=ctx.now(),
        customer=customer["id"],
        livemode=False,
        locale=params.get("locale"),
        return_url=return_url,
        url=f"{ctx.sandbox.public_url}/portal/{session_id}",
    )
    session["flow"] = params.get("flow_data")
    ctx.put(session)
    return session
