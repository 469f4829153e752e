"""Money types. The platform is loose (`12`, `"12"`, `"0.12"` yuan); we store fen as int."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

__all__ = ["Fen", "YuanAsFen", "fen_from_yuan", "parse_fen"]


def parse_fen(value: Any) -> int:
    """An amount in fen given as `12` or `"12"`; anything fractional is rejected."""
    if isinstance(value, bool):
        raise ValueError("an amount in fen must be an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"an amount in fen must be an integer, got {value!r}")


def fen_from_yuan(value: Any) -> int:
    """A yuan amount (`"0.12"`, `0.12`, `"12"`) in fen; more than two decimals is an error."""
    if isinstance(value, bool):
        raise ValueError("a yuan amount must be a number, not a boolean")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a yuan amount: {value!r}") from None
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"a yuan amount has at most two decimals, got {value!r}")
    return int(fen)


Fen = Annotated[int, BeforeValidator(parse_fen), Field(json_schema_extra={"unit": "fen"})]
YuanAsFen = Annotated[int, BeforeValidator(fen_from_yuan), Field(json_schema_extra={"unit": "fen"})]
