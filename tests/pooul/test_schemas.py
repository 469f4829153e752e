"""What the incoming models accept: the platform's loose types, and nothing that could pass a
wrong amount or state for a right one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.money import fen_from_yuan, parse_fen
from schemas.pooul import QueryData
from schemas.trade_state import TradeState


@pytest.mark.parametrize(("given", "fen"), [(12, 12), ("12", 12), (" 12 ", 12), (12.0, 12), (0, 0)])
def test_fen_in_the_forms_the_platform_uses(given: object, fen: int) -> None:
    assert parse_fen(given) == fen


@pytest.mark.parametrize("given", [-1, "-1", "１２", True, False, 1.5, float("inf"), "", "12.0"])
def test_fen_rejects_negative_unicode_boolean_and_fractional_amounts(given: object) -> None:
    with pytest.raises(ValueError):
        parse_fen(given)


@pytest.mark.parametrize(("given", "fen"), [("0.12", 12), (0.12, 12), ("12", 1200), (12, 1200)])
def test_yuan_in_the_forms_the_platform_uses(given: object, fen: int) -> None:
    assert fen_from_yuan(given) == fen


@pytest.mark.parametrize(
    "given",
    [
        "Infinity",
        "-Infinity",
        "NaN",
        "sNaN",
        "-0.50",
        "１",
        "x",
        True,
        "0.123",
        "",
        "1e999999",
        "1E+999990",
    ],
)
def test_yuan_rejects_non_finite_negative_unicode_and_sub_fen_amounts(given: object) -> None:
    """Each is a ValueError (a validation error in a model), never an OverflowError that would
    escape the client's typed errors."""
    with pytest.raises(ValueError):
        fen_from_yuan(given)


def _answer(**fields: object) -> QueryData:
    return QueryData.model_validate({"merchant_id": "888", "trade_id": "T1", **fields})


@pytest.mark.parametrize(("given", "state"), [(0, TradeState.PAID), ("0", TradeState.PAID), ("-1", TradeState.INITIAL), (6, TradeState.PAYING)])  # fmt: skip
def test_trade_state_as_number_or_digits(given: object, state: TradeState) -> None:
    assert _answer(trade_state=given).trade_state is state


@pytest.mark.parametrize("given", [False, True, "８", 8, "paid", None])
def test_trade_state_rejects_booleans_unicode_digits_and_undocumented_values(given: object) -> None:
    """`false` would otherwise read as 0 — paid."""
    with pytest.raises(ValidationError):
        _answer(trade_state=given)


def test_a_negative_total_fee_makes_the_answer_invalid() -> None:
    with pytest.raises(ValidationError):
        _answer(trade_state=0, total_fee=-12)


def test_odd_amounts_no_decision_reads_are_left_out_not_fatal() -> None:
    """Coupon, buyer-paid, invoice, point and receipt amounts are informative: an odd value is
    None, and the answer (and the paid trade's event) still goes through."""
    answer = _answer(
        trade_state=0,
        total_fee=12,
        coupon_fee=-1,
        buyer_pay_amount="Infinity",
        invoice_amount="1e999999",
        point_amount="0.10",
        receipt_amount="１",
    )
    assert answer.total_fee == 12
    assert (answer.coupon_fee, answer.buyer_pay_amount, answer.invoice_amount) == (None,) * 3
    assert (answer.point_amount, answer.receipt_amount) == (10, None)
