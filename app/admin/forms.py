"""HTML forms <-> the API's input Structs.

Form fields are named like the API's camelCase fields (`featureType`, `charges[0].amount`)
so an error's `param`, from msgspec or from a service, names the field it belongs to.
Amounts are typed by people in major units ("12.50") and stored in minor units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from app.core.errors import TollgateError
from app.core.money import minor_unit_exponent

T = TypeVar("T")

FormData = Mapping[str, Any]
Errors = dict[str, str]

_PATH_RE = re.compile(r"at `\$\.?(?P<path>[^`]*)`")
_MISSING_RE = re.compile(r"missing required field `(?P<field>[^`]+)`")
_ROW_RE = re.compile(r"^(?P<list>[A-Za-z]+)\[(?P<index>\d+)\]\.(?P<field>[A-Za-z]+)$")


class FormInvalid(Exception):
    """Field errors found before the service was called."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("invalid form")
        self.errors = errors


def text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in {"on", "true", "1"}


def all_values(form: Any, name: str) -> list[str]:
    getall = getattr(form, "getall", None)
    values = getall(name, []) if getall else ([form[name]] if name in form else [])
    return [str(v) for v in values if str(v).strip()]


def to_minor_units(value: str, currency: str | None) -> int:
    """ "12.50" USD -> 1250; ValueError when it is not a number with at most the currency's decimals."""
    try:
        amount = Decimal(value.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        raise ValueError(value) from None
    exponent = minor_unit_exponent((currency or "usd").lower())
    minor = amount * (10**exponent)
    if not amount.is_finite() or minor != minor.to_integral_value():
        raise ValueError(value)
    return int(minor)


def to_major_units(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return ""
    exponent = minor_unit_exponent((currency or "usd").lower())
    if exponent == 0:
        return str(amount)
    return f"{Decimal(amount) / (10**exponent):.{exponent}f}"


def row_indexes(form: Iterable[str], prefix: str) -> list[int]:
    """The row numbers present in the form for a repeated group such as `charges[3].amount`."""
    found = set()
    for key in form:
        match = _ROW_RE.match(key)
        if match and match["list"] == prefix:
            found.add(int(match["index"]))
    return sorted(found)


def convert(data: dict[str, Any], struct: type[T]) -> T:
    """The API's Struct from form data; FormInvalid with the failing field on a type/limit error."""
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        field = match["path"] if match else "_form"
        if missing := _MISSING_RE.search(message):
            # `$.charges[0]` + missing `amount` -> the field charges[0].amount
            field = f"{field}.{missing['field']}" if match else missing["field"]
            message = "This field is required."
        if field.startswith("defaultTrial"):
            field = "trialDays"
        human = message.split(" - at ")[0]
        if "Object contains unknown field" in human:
            field = "_form"
        raise FormInvalid({field or "_form": human}) from None


def service_errors(exc: TollgateError) -> Errors:
    """A service refusal, placed next to the field it names (or at the top of the form)."""
    field = exc.param or "_form"
    if field == "defaultTrial":
        field = "trialDays"
    return {field: exc.message}
