"""Customers, their tax ids, payment methods (with Stripe's test cards) and setup intents."""

from __future__ import annotations

import hashlib
from typing import Any

from app.sandbox.core import Ctx, apply_metadata, changed_fields, route, unset
from app.sandbox.fixtures import shaped
from app.sandbox.wire import StripeError, new_id

ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")

# Stripe's test card numbers: brand, and what happens when they are used.
TEST_CARDS: dict[str, dict[str, Any]] = {
    "4242424242424242": {"brand": "visa"},
    "4000056655665556": {"brand": "visa", "funding": "debit"},
    "5555555555554444": {"brand": "mastercard"},
    "2223003122003222": {"brand": "mastercard"},
    "378282246310005": {"brand": "amex"},
    "6011111111111117": {"brand": "discover"},
    "4000000000000002": {"brand": "visa", "decline": "generic_decline"},
    "4000000000009995": {"brand": "visa", "decline": "insufficient_funds"},
    "4000000000000069": {"brand": "visa", "decline": "expired_card"},
    # Attaches fine, every later charge fails (renewal failures, past_due).
    "4000000000000341": {"brand": "visa", "charge_fails": "generic_decline"},
}

# Stripe's test PaymentMethod ids and tokens -> the test card they stand for.
TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "tok_visa": "4242424242424242",
    "tok_mastercard": "5555555555554444",
    "tok_amex": "378282246310005",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeCustomerFail": "4000000000000341",
}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}


def card_declined(decline_code: str, param: str | None = None) -> StripeError:
    return StripeError(
        402,
        DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
        type="card_error",
        code="card_declined" if decline_code != "expired_card" else "expired_card",
        decline_code=decline_code,
        param=param,
    )


def _address(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    return {k: value.get(k) for k in ADDRESS_FIELDS}


def _automatic_tax_status(address: dict[str, Any] | None) -> str:
    if address and address.get("country"):
        return "supported"
    return "unrecognized_location"


def _customer_tax(customer: dict[str, Any]) -> dict[str, Any]:
    address = customer.get("address")
    country = (address or {}).get("country")
    return {
        "automatic_tax": _automatic_tax_status(address),
        "ip_address": None,
        "location": {"country": country, "source": "billing_address", "state": (address or {}).get("state")}
        if country
        else None,
        "provider": "stripe",
    }


# -- customers --------------------------------------------------------------------------------
@route("POST", "/v1/customers", "CustomerCreateParams")
def create_customer(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    clock_id = params.get("test_clock")
    if clock_id:
        ctx.get("test_helpers.test_clock", clock_id, "test_clock")
    customer = shaped(
        "customer",
        id=new_id("cus_", 14),
        created=ctx.now_for_customer(None)
        if not clock_id
        else ctx.get("test_helpers.test_clock", clock_id)["frozen_time"],
        address=_address(unset(params.get("address"))),
        balance=params.get("balance", 0),
        delinquent=False,
        description=params.get("description"),
        email=params.get("email"),
        invoice_prefix=params.get("invoice_prefix") or new_id("", 8).upper(),
        metadata=apply_metadata({}, params.get("metadata")),
        name=params.get("name"),
        next_invoice_sequence=params.get("next_invoice_sequence", 1),
        phone=params.get("phone"),
        preferred_locales=params.get("preferred_locales", []),
        shipping=unset(params.get("shipping")),
        tax_exempt=unset(params.get("tax_exempt")) or "none",
        test_clock=clock_id,
    )
    settings = params.get("invoice_settings") or {}
    customer["invoice_settings"]["default_payment_method"] = None
    if settings.get("footer"):
        customer["invoice_settings"]["footer"] = settings["footer"]
    customer["tax"] = _customer_tax(customer)
    ctx.put(customer)
    ctx.emit("customer.created", customer)
    attached_id = None
    if params.get("payment_method"):
        attached_id = attach_payment_method(
            ctx, {"customer": customer["id"]}, {"id": params["payment_method"]}
        )["id"]
    default_pm = unset(settings.get("default_payment_method"))
    if default_pm:
        # A test id such as pm_card_visa given twice means the card just attached.
        if default_pm == params.get("payment_method") and attached_id:
            default_pm = attached_id
        customer = update_customer(
            ctx, {"invoice_settings": {"default_payment_method": default_pm}}, {"id": customer["id"]}
        )
    for data in params.get("tax_id_data", []):
        _new_tax_id(ctx, customer["id"], data)
    return ctx.get("customer", customer["id"])


@route("GET", "/v1/customers/{id}", "CustomerRetrieveParams")
def retrieve_customer(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    if ctx.store.kind_of(ctx.account, path["id"]) == "deleted_customer":
        return {"id": path["id"], "object": "customer", "deleted": True}
    return ctx.get("customer", path["id"])


@route("POST", "/v1/customers/{id}", "CustomerUpdateParams")
def update_customer(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    customer = ctx.get("customer", path["id"])
    before = {k: (dict(v) if isinstance(v, dict) else v) for k, v in customer.items()}
    for name in (
        "description",
        "email",
        "name",
        "phone",
        "preferred_locales",
        "balance",
        "next_invoice_sequence",
    ):
        if name in params:
            customer[name] = unset(params[name])
    if "tax_exempt" in params:
        customer["tax_exempt"] = unset(params["tax_exempt"]) or "none"
    if "address" in params:
        customer["address"] = _address(unset(params["address"]))
    if "shipping" in params:
        customer["shipping"] = unset(params["shipping"])
    if "metadata" in params:
        customer["metadata"] = apply_metadata(customer.get("metadata"), params["metadata"])
    settings = params.get("invoice_settings")
    if isinstance(settings, dict):
        invoice_settings = dict(customer["invoice_settings"])
        if "default_payment_method" in settings:
            pm_id = unset(settings["default_payment_method"])
            if pm_id:
                pm = ctx.find("payment_method", pm_id)
                if pm is None or pm.get("customer") != customer["id"]:
                    raise StripeError(
                        400,
                        f"No such PaymentMethod: '{pm_id}'; It's possible this PaymentMethod exists on one of your connected accounts, in which case you should retry this request on that connected account.",
                        code="resource_missing",
                        param="invoice_settings[default_payment_method]",
                    )
            invoice_settings["default_payment_method"] = pm_id
        if "footer" in settings:
            invoice_settings["footer"] = unset(settings["footer"])
        customer["invoice_settings"] = invoice_settings
    customer["tax"] = _customer_tax(customer)
    previous = changed_fields(before, customer)
    previous.pop("tax", None)
    ctx.put(customer)
    if previous:
        ctx.emit("customer.updated", customer, previous)
    return customer


@route("GET", "/v1/customers", "CustomerListParams")
def list_customers(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(customer: dict[str, Any]) -> bool:
        if "email" in params and customer.get("email") != params["email"]:
            return False
        return not ("test_clock" in params and customer.get("test_clock") != params["test_clock"])

    return ctx.page("customer", params, "/v1/customers", keep, ("email", "test_clock"))


@route("GET", "/v1/customers/search", "CustomerSearchParams")
def search_customers(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    matches = [c for c in ctx.all("customer") if search_matches(c, params["query"])]
    limit = params.get("limit", 10)
    return {
        "object": "search_result",
        "data": matches[:limit],
        "has_more": len(matches) > limit,
        "next_page": None,
        "url": "/v1/customers/search",
    }


def search_matches(obj: dict[str, Any], query: str) -> bool:
    """A small part of Stripe's search language: `field:'value'` and `metadata['k']:'v'` joined by AND."""
    for clause in query.split(" AND "):
        field, _, raw = clause.strip().partition(":")
        value = raw.strip().strip("'\"")
        if field.startswith("metadata["):
            key = field[len("metadata[") : -1].strip("'\"")
            if (obj.get("metadata") or {}).get(key) != value:
                return False
        elif str(obj.get(field.strip())) != value:
            return False
    return True


@route("DELETE", "/v1/customers/{id}", "CustomerDeleteParams")
def delete_customer(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    from app.sandbox.resources.billing import cancel_subscription_now

    customer = ctx.get("customer", path["id"])
    for subscription in ctx.of_customer("subscription", customer["id"]):
        if subscription["status"] != "canceled":
            cancel_subscription_now(ctx, subscription, reason="cancellation_requested")
    ctx.delete(customer["id"])
    ctx.store.put(
        ctx.account, "deleted_customer", {"id": customer["id"], "object": "customer", "deleted": True}
    )
    ctx.emit("customer.deleted", customer)
    return {"id": customer["id"], "object": "customer", "deleted": True}


# -- tax ids ----------------------------------------------------------------------------------
def _new_tax_id(ctx: Ctx, customer_id: str, data: dict[str, Any]) -> dict[str, Any]:
    value = data["value"]
    tax_id = shaped(
        "tax_id",
        id=new_id("txi_"),
        created=ctx.now(),
        country=value[:2].upper() if data["type"].startswith("eu_") else None,
        customer=customer_id,
        owner={
            "customer": customer_id,
            "type": "customer",
            "customer_account": None,
            "account": None,
            "application": None,
        },
        type=data["type"],
        value=value,
        verification={"status": "verified", "verified_address": None, "verified_name": None},
    )
    ctx.put(tax_id)
    ctx.emit("customer.tax_id.created", tax_id)
    return tax_id


@route("POST", "/v1/customers/{id}/tax_ids", "CustomerCreateTaxIdParams")
def create_tax_id(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    ctx.get("customer", path["id"])
    return _new_tax_id(ctx, path["id"], params)


@route("GET", "/v1/customers/{id}/tax_ids", "CustomerListTaxIdsParams")
def list_tax_ids(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    ctx.get("customer", path["id"])
    return ctx.page(
        "tax_id", params, f"/v1/customers/{path['id']}/tax_ids", lambda t: t["customer"] == path["id"]
    )


@route("GET", "/v1/customers/{id}/tax_ids/{tax_id}", "CustomerRetrieveTaxIdParams")
def retrieve_tax_id(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    tax_id = ctx.get("tax_id", path["tax_id"])
    if tax_id["customer"] != path["id"]:
        raise StripeError(404, f"No such tax id: '{path['tax_id']}'", code="resource_missing", param="id")
    return tax_id


@route("DELETE", "/v1/customers/{id}/tax_ids/{tax_id}", "CustomerDeleteTaxIdParams")
def delete_tax_id(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    tax_id = retrieve_tax_id(ctx, {}, path)
    ctx.delete(tax_id["id"])
    ctx.emit("customer.tax_id.deleted", tax_id)
    return {"id": tax_id["id"], "object": "tax_id", "deleted": True}


# -- payment methods --------------------------------------------------------------------------
def card_payment_method(
    ctx: Ctx, number: str, *, exp_month: int = 12, exp_year: int = 2034, billing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A new card PaymentMethod for a test card number (declining cards are refused here)."""
    number = number.replace(" ", "")
    card = TEST_CARDS.get(number)
    if card is None:
        raise StripeError(
            402, "Your card number is incorrect.", type="card_error", code="incorrect_number", param="number"
        )
    if card.get("decline"):
        raise card_declined(card["decline"])
    pm = shaped(
        "payment_method",
        id=new_id("pm_"),
        created=ctx.now(),
        customer=None,
        metadata={},
        type="card",
        allow_redisplay="unspecified",
    )
    pm["card"].update(
        {
            "brand": card["brand"],
            "display_brand": card["brand"],
            "country": "US",
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
            "funding": card.get("funding", "credit"),
            "last4": number[-4:],
        }
    )
    # Which test card this is decides later charges; kept beside Stripe's fields.
    pm["card"]["checks"] = {
        "address_line1_check": None,
        "address_postal_code_check": None,
        "cvc_check": "pass",
    }
    pm["_charge_fails"] = card.get("charge_fails")
    details = billing or {}
    pm["billing_details"] = {
        "address": _address(details.get("address")) or {k: None for k in ADDRESS_FIELDS},
        "email": details.get("email"),
        "name": details.get("name"),
        "phone": details.get("phone"),
        "tax_id": None,
    }
    ctx.put(pm)
    return pm


def resolve_payment_method(ctx: Ctx, pm_id: str, param: str = "payment_method") -> dict[str, Any]:
    """A stored PaymentMethod, or a fresh one for Stripe's test ids such as `pm_card_visa`."""
    if pm_id in TEST_PAYMENT_METHODS:
        return card_payment_method(ctx, TEST_PAYMENT_METHODS[pm_id])
    return ctx.get("payment_method", pm_id, param)


@route("POST", "/v1/payment_methods", "PaymentMethodCreateParams")
def create_payment_method(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    if params.get("type", "card") != "card":
        raise StripeError(400, "The sandbox supports card payment methods only.", param="type")
    card = params.get("card") or {}
    number = card.get("number") or TEST_PAYMENT_METHODS.get(card.get("token", ""), "")
    if not number:
        raise StripeError(
            400, "Missing required param: card[number].", code="parameter_missing", param="card[number]"
        )
    pm = card_payment_method(
        ctx,
        number,
        exp_month=int(card.get("exp_month", 12)),
        exp_year=int(card.get("exp_year", 2034)),
        billing=params.get("billing_details"),
    )
    pm["metadata"] = apply_metadata({}, params.get("metadata"))
    ctx.put(pm)
    return pm


@route("GET", "/v1/payment_methods/{id}", "PaymentMethodRetrieveParams")
def retrieve_payment_method(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    if path["id"] in TEST_PAYMENT_METHODS:
        return resolve_payment_method(ctx, path["id"], "id")
    return ctx.get("payment_method", path["id"])


@route("POST", "/v1/payment_methods/{id}", "PaymentMethodUpdateParams")
def update_payment_method(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    pm = ctx.get("payment_method", path["id"])
    before = dict(pm)
    if "metadata" in params:
        pm["metadata"] = apply_metadata(pm.get("metadata"), params["metadata"])
    if "billing_details" in params:
        details = params["billing_details"]
        current = dict(pm["billing_details"])
        for key in ("email", "name", "phone"):
            if key in details:
                current[key] = unset(details[key])
        if "address" in details:
            current["address"] = _address(unset(details["address"]))
        pm["billing_details"] = current
    if "card" in params:
        pm["card"] = {
            **pm["card"],
            **{k: int(v) for k, v in params["card"].items() if k in {"exp_month", "exp_year"}},
        }
    ctx.put(pm)
    if pm.get("customer"):
        ctx.emit("payment_method.updated", pm, changed_fields(before, pm))
    return pm


@route("POST", "/v1/payment_methods/{id}/attach", "PaymentMethodAttachParams")
def attach_payment_method(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    pm = resolve_payment_method(ctx, path["id"], "payment_method")
    customer = ctx.get("customer", params["customer"], "customer")
    if pm.get("customer") and pm["customer"] != customer["id"]:
        raise StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if pm.get("_charge_fails") is None and pm["card"].get("last4") == "0002":
        raise card_declined("generic_decline")
    pm["customer"] = customer["id"]
    ctx.put(pm)
    ctx.emit("payment_method.attached", pm)
    return pm


@route("POST", "/v1/payment_methods/{id}/detach", "PaymentMethodDetachParams")
def detach_payment_method(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    pm = ctx.get("payment_method", path["id"])
    customer_id = pm.get("customer")
    if not customer_id:
        raise StripeError(
            400,
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            code="payment_method_unexpected_state",
        )
    pm["customer"] = None
    ctx.put(pm)
    customer = ctx.find("customer", customer_id)
    if customer and customer["invoice_settings"].get("default_payment_method") == pm["id"]:
        customer["invoice_settings"]["default_payment_method"] = None
        ctx.put(customer)
        ctx.emit("customer.updated", customer, {"invoice_settings": {"default_payment_method": pm["id"]}})
    ctx.emit("payment_method.detached", pm, {"customer": customer_id})
    return pm


@route("GET", "/v1/payment_methods", "PaymentMethodListParams")
def list_payment_methods(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    def keep(pm: dict[str, Any]) -> bool:
        if "customer" in params and pm.get("customer") != params["customer"]:
            return False
        return not ("type" in params and pm["type"] != params["type"])

    return ctx.page("payment_method", params, "/v1/payment_methods", keep, ("customer", "type"))


@route("GET", "/v1/customers/{id}/payment_methods", "CustomerListPaymentMethodsParams")
def list_customer_payment_methods(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    ctx.get("customer", path["id"])
    return ctx.page(
        "payment_method",
        params,
        f"/v1/customers/{path['id']}/payment_methods",
        lambda pm: (
            pm.get("customer") == path["id"] and ("type" not in params or pm["type"] == params["type"])
        ),
    )


# -- setup intents ----------------------------------------------------------------------------
def _confirm_setup(ctx: Ctx, intent: dict[str, Any], pm_id: str) -> dict[str, Any]:
    try:
        pm = resolve_payment_method(ctx, pm_id)
        if intent.get("customer"):
            pm = attach_payment_method(ctx, {"customer": intent["customer"]}, {"id": pm["id"]})
    except StripeError as error:
        if error.type != "card_error":
            raise
        intent["status"] = "requires_payment_method"
        intent["last_setup_error"] = {
            "code": error.code,
            "decline_code": error.decline_code,
            "message": error.message,
            "type": "card_error",
        }
        ctx.put(intent)
        ctx.emit("setup_intent.setup_failed", intent)
        raise
    intent["payment_method"] = pm["id"]
    intent["status"] = "succeeded"
    intent["last_setup_error"] = None
    ctx.put(intent)
    ctx.emit("setup_intent.succeeded", intent)
    return intent


@route("POST", "/v1/setup_intents", "SetupIntentCreateParams")
def create_setup_intent(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    if params.get("customer"):
        ctx.get("customer", params["customer"], "customer")
    intent_id = new_id("seti_")
    intent = shaped(
        "setup_intent",
        id=intent_id,
        client_secret=f"{intent_id}_secret_{new_id('', 24)}",
        created=ctx.now(),
        customer=params.get("customer"),
        description=params.get("description"),
        metadata=apply_metadata({}, params.get("metadata")),
        payment_method=None,
        payment_method_types=params.get("payment_method_types", ["card"]),
        status="requires_payment_method",
        usage=params.get("usage", "off_session"),
    )
    ctx.put(intent)
    ctx.emit("setup_intent.created", intent)
    if params.get("payment_method"):
        intent["payment_method"] = params["payment_method"]
        intent["status"] = "requires_confirmation"
        ctx.put(intent)
        if params.get("confirm"):
            return _confirm_setup(ctx, intent, params["payment_method"])
    return intent


@route("GET", "/v1/setup_intents/{id}", "SetupIntentRetrieveParams")
def retrieve_setup_intent(ctx: Ctx, _: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    return ctx.get("setup_intent", path["id"])


@route("POST", "/v1/setup_intents/{id}", "SetupIntentUpdateParams")
def update_setup_intent(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    intent = ctx.get("setup_intent", path["id"])
    if "metadata" in params:
        intent["metadata"] = apply_metadata(intent.get("metadata"), params["metadata"])
    for name in ("customer", "description", "payment_method"):
        if name in params:
            intent[name] = unset(params[name])
    if intent.get("payment_method") and intent["status"] == "requires_payment_method":
        intent["status"] = "requires_confirmation"
    ctx.put(intent)
    return intent


@route("POST", "/v1/setup_intents/{id}/confirm", "SetupIntentConfirmParams")
def confirm_setup_intent(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    intent = ctx.get("setup_intent", path["id"])
    if intent["status"] in {"succeeded", "canceled"}:
        raise StripeError(
            400,
            f"You cannot confirm this SetupIntent because it has a status of {intent['status']}.",
            code="setup_intent_unexpected_state",
        )
    pm_id = params.get("payment_method") or intent.get("payment_method")
    if not pm_id:
        raise StripeError(
            400, "You must provide a payment method to confirm this SetupIntent.", param="payment_method"
        )
    return _confirm_setup(ctx, intent, pm_id)


@route("POST", "/v1/setup_intents/{id}/cancel", "SetupIntentCancelParams")
def cancel_setup_intent(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    intent = ctx.get("setup_intent", path["id"])
    if intent["status"] == "succeeded":
        raise StripeError(
            400,
            "You cannot cancel this SetupIntent because it has a status of succeeded.",
            code="setup_intent_unexpected_state",
        )
    intent["status"] = "canceled"
    intent["cancellation_reason"] = params.get("cancellation_reason")
    ctx.put(intent)
    ctx.emit("setup_intent.canceled", intent)
    return intent


@route("GET", "/v1/setup_intents", "SetupIntentListParams")
def list_setup_intents(ctx: Ctx, params: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    return ctx.page(
        "setup_intent",
        params,
        "/v1/setup_intents",
        lambda i: "customer" not in params or i.get("customer") == params["customer"],
    )
