"""Money is an integer amount of minor units plus an ISO 4217 currency code. Never floats."""

from __future__ import annotations

from fractions import Fraction

from app.core.errors import InvalidRequest

# Currencies Stripe settles in, with their minor-unit exponents where they are not 2.
_ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
_THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
SUPPORTED_CURRENCIES = frozenset(
    {
        "usd", "eur", "gbp", "cad", "aud", "nzd", "chf", "sek", "nok", "dkk", "pln", "czk", "huf", "ron", "bgn",
        "ils", "inr", "sgd", "hkd", "mxn", "brl", "zar", "aed", "sar", "try", "thb", "myr", "php", "idr", "twd",
    }
    | _ZERO_DECIMAL
    | _THREE_DECIMAL
)  # fmt: skip

MAX_AMOUNT = 99_999_999_999  # Stripe's own ceiling for an amount in minor units


def normalize_currency(code: str, *, param: str = "currency") -> str:
    lowered = code.strip().lower()
    if lowered not in SUPPORTED_CURRENCIES:
        raise InvalidRequest(
            f"'{code}' is not a supported ISO 4217 currency code.", code="invalid_currency", param=param
        )
    return lowered


def minor_unit_exponent(currency: str) -> int:
    if currency in _ZERO_DECIMAL:
        return 0
    if currency in _THREE_DECIMAL:
        return 3
    return 2


def check_amount(amount: int, *, param: str) -> int:
    if amount < 0 or amount > MAX_AMOUNT:
        raise InvalidRequest(
            f"Amounts are whole minor units between 0 and {MAX_AMOUNT}.", code="invalid_amount", param=param
        )
    return amount


def round_half_up(value: Fraction) -> int:
    """Round a rational amount of minor units to the nearest unit, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole = magnitude.numerator // magnitude.denominator
    if (magnitude - whole) * 2 >= 1:
        whole += 1
    return sign * whole


def format_amount(amount: int, currency: str) -> str:
    """Human text such as "$12.50" or "¥1200" for templates."""
    exponent = minor_unit_exponent(currency)
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹"}.get(currency, "")
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if exponent == 0:
        number = f"{amount:,}"
    else:
        major, minor = divmod(amount, 10**exponent)
        number = f"{major:,}.{minor:0{exponent}d}"
        if minor == 0:
            number = f"{major:,}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"
