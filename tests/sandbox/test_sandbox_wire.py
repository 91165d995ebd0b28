"""Wire format and validation units: bracket forms, pagination, stripe.params coercion."""

from __future__ import annotations

import pytest

from app.sandbox.fixtures import blank, examples, missing_fields
from app.sandbox.validation import validate
from app.sandbox.wire import StripeError, paginate, parse_form


def test_parse_form_nests_brackets_and_arrays() -> None:
    parsed = parse_form(
        "items[0][price]=p1&items[1][price]=p2&items[1][quantity]=3&expand[]=a&expand[]=b&metadata[k]=v"
    )
    assert parsed == {
        "items": {"0": {"price": "p1"}, "1": {"price": "p2", "quantity": "3"}},
        "expand": {"0": "a", "1": "b"},
        "metadata": {"k": "v"},
    }


def test_validate_coerces_types_from_the_sdk_definitions() -> None:
    params = validate(
        "SubscriptionCreateParams",
        parse_form(
            "customer=cus_1&items[0][price]=p&items[0][quantity]=3&trial_period_days=7&cancel_at_period_end=true"
        ),
    )
    assert params == {
        "customer": "cus_1",
        "items": [{"price": "p", "quantity": 3}],
        "trial_period_days": 7,
        "cancel_at_period_end": True,
    }


@pytest.mark.parametrize(
    ("params_class", "form", "code", "param"),
    [
        ("CustomerCreateParams", "nickname=x", "parameter_unknown", "nickname"),
        ("CustomerCreateParams", "address[planet]=Mars", "parameter_unknown", "address[planet]"),
        ("CustomerCreateParams", "balance=ten", "parameter_invalid_integer", "balance"),
        (
            "SubscriptionCreateParams",
            "items[0][quantity]=lots",
            "parameter_invalid_integer",
            "items[0][quantity]",
        ),
        (
            "SubscriptionCreateParams",
            "cancel_at_period_end=maybe",
            "parameter_invalid_boolean",
            "cancel_at_period_end",
        ),
        (
            "PriceCreateParams",
            "currency=usd&recurring[interval]=fortnight",
            "parameter_invalid_string",
            "recurring[interval]",
        ),
        ("PriceCreateParams", "unit_amount=5", "parameter_missing", "currency"),
        ("CustomerCreateParams", "invoice_settings=x", "parameter_invalid_hash", "invoice_settings"),
    ],
)
def test_validate_rejects_like_stripe(params_class: str, form: str, code: str, param: str) -> None:
    with pytest.raises(StripeError) as raised:
        validate(params_class, parse_form(form))
    assert raised.value.status == 400
    assert raised.value.code == code
    assert raised.value.param == param


def test_request_options_are_not_parameters() -> None:
    with pytest.raises(StripeError) as raised:
        validate("CustomerCreateParams", parse_form("idempotency_key=abc"))
    assert raised.value.code == "parameter_unknown"


def test_empty_string_unsets_where_stripe_allows_it() -> None:
    assert validate("CustomerUpdateParams", parse_form("metadata=&address=")) == {
        "metadata": "",
        "address": "",
    }


def test_paginate_newest_first_windows() -> None:
    items = [{"id": f"obj_{n}"} for n in range(9, 0, -1)]
    first = paginate(items, {"limit": 3}, "/v1/x")
    assert [i["id"] for i in first["data"]] == ["obj_9", "obj_8", "obj_7"]
    assert first["has_more"]
    second = paginate(items, {"limit": 3, "starting_after": "obj_7"}, "/v1/x")
    assert [i["id"] for i in second["data"]] == ["obj_6", "obj_5", "obj_4"]
    back = paginate(items, {"limit": 2, "ending_before": "obj_6"}, "/v1/x")
    assert [i["id"] for i in back["data"]] == ["obj_8", "obj_7"]
    assert back["has_more"]
    with pytest.raises(StripeError):
        paginate(items, {"limit": 0}, "/v1/x")


def test_blank_objects_keep_every_example_field() -> None:
    for kind in ("customer", "subscription", "invoice", "price", "product", "checkout.session", "event"):
        assert missing_fields(examples()[kind], blank(kind)) == []
    customer = blank("customer")
    assert customer["discount"] is None
    assert customer["invoice_settings"]["default_payment_method"] is None


def test_every_route_names_an_sdk_params_class() -> None:
    import app.sandbox.server  # noqa: F401  (registers the routes)
    from app.sandbox.core import ROUTER
    from app.sandbox.validation import params_class

    assert len(ROUTER.routes) > 90
    for route in ROUTER.routes:
        assert route.params is not None, route.template
        cls = params_class(route.params)
        assert hasattr(cls, "__required_keys__"), route.params
