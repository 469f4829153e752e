"""Money types. The platform is loose (`12`, `"12"`, `"0.12"` yuan); we store fen as int."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

__all__ = [
    "Fen",
    "LenientFen",
    "LenientYuanAsFen",
    "YuanAsFen",
    "ascii_digits",
    "fen_from_yuan",
    "parse_fen",
]

_MAX_YUAN_DIGITS = 15  # `Decimal.adjusted()` of the largest accepted amount


def ascii_digits(text: str) -> bool:
    """0-9 only: `str.isdigit` also takes `²` (which `int` refuses) and full-width or
    Arabic-Indic digits (which it takes, and the platform would not)."""
    return text.isascii() and text.isdigit()


def parse_fen(value: Any) -> int:
    """An amount in fen given as `12` or `"12"` (ASCII digits); anything fractional, negative
    or boolean is rejected."""
    if isinstance(value, bool):
        raise ValueError("an amount in fen must be an integer, not a boolean")
    if isinstance(value, int):
        fen = value
    elif isinstance(value, str) and ascii_digits(value.strip()):
        fen = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        fen = int(value)
    else:
        raise ValueError(f"an amount in fen must be an integer, got {value!r}")
    if fen < 0:
        raise ValueError(f"an amount cannot be negative, got {value!r}")
    return fen


def fen_from_yuan(value: Any) -> int:
    """A yuan amount (`"0.12"`, `0.12`, `"12"`) in fen; more than two decimals, a negative or
    non-finite amount, or a boolean is an error."""
    if isinstance(value, bool):
        raise ValueError("a yuan amount must be a number, not a boolean")
    text = str(value).strip()
    try:
        amount = Decimal(text) if text.isascii() else None
    except (InvalidOperation, ArithmeticError):  # e.g. "1e999999" overflows the context
        amount = None
    # Finite, and below 10^16 yuan (a huge exponent would otherwise make a million-digit int).
    if amount is None or not amount.is_finite() or amount.adjusted() > _MAX_YUAN_DIGITS:
        raise ValueError(f"not a yuan amount: {value!r}")
    if amount < 0:
        raise ValueError(f"an amount cannot be negative, got {value!r}")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"a yuan amount has at most two decimals, got {value!r}")
    return int(fen)


def _or_none(parse: Callable[[Any], int]) -> Callable[[Any], int | None]:
    def lenient(value: Any) -> int | None:
        try:
            return parse(value)
        except ValueError:
            return None

    return lenient


Fen = Annotated[int, BeforeValidator(parse_fen), Field(json_schema_extra={"unit": "fen"})]
YuanAsFen = Annotated[int, BeforeValidator(fen_from_yuan), Field(json_schema_extra={"unit": "fen"})]
# For amounts no decision reads (coupon, buyer-paid, invoice… amounts): an odd value is left out
# (None) instead of making a whole verified answer unreadable.
LenientFen = Annotated[
    int | None, BeforeValidator(_or_none(parse_fen)), Field(json_schema_extra={"unit": "fen"})
]
LenientYuanAsFen = Annotated[
    int | None, BeforeValidator(_or_none(fen_from_yuan)), Field(json_schema_extra={"unit": "fen"})
]
