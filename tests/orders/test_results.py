"""Order results and the order-created signal (worker/orders/results.py): pure."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from schemas.orders import FieldError, OrderRequest, parse_order_result
from schemas.signals import parse_trade_signal
from worker.orders.requests import Invalid
from worker.orders.results import (
    created_result,
    created_signal,
    encode_result,
    encode_signal,
    failed_result,
    rejected_result,
)
from worker.orders.state import StoredOrder

NOW = 1_750_000_000.0
REQUESTED = 1_749_999_999.5


def request(**changes) -> OrderRequest:
    fields = {
        "merchant_id": "888",
        "mch_trade_id": "T1",
        "body": "tea",
        "total_fee": 500,
        "spbill_create_ip": "10.0.0.1",
        "buyer_id": "2088",
        "notify_url": "http://n.example/",
        "request_id": "req-1",
        **changes,
    }
    return OrderRequest.model_validate(fields, strict=True)


ORDER = StoredOrder(
    trade_id="P1",
    total_fee=500,
    token_id="tok",
    pay_url="https://pay/1",
    appid=None,
    created_at=NOW - 60,
    expires_at=NOW + 7200,
)


def test_created_result_round_trip():
    """A created result carries the order's ids and times and parses back from its bytes."""
    value, headers = encode_result(
        created_result(request(), ORDER, requested_at=REQUESTED, now=NOW)
    )
    parsed = parse_order_result(value)
    assert parsed.status == "created"
    assert (parsed.trade_id, parsed.token_id, parsed.pay_url, parsed.appid) == (
        "P1",
        "tok",
        "https://pay/1",
        None,
    )
    assert parsed.created_at == datetime.fromtimestamp(NOW - 60, UTC)
    assert parsed.requested_at == datetime.fromtimestamp(REQUESTED, UTC)
    assert parsed.request_id == "req-1"
    assert dict(headers) == {
        "pooul-status": b"created",
        "pooul-merchant-id": b"888",
        "pooul-request-id": b"req-1",
    }


def test_two_answers_about_one_order_differ_only_in_answer_times():
    """Answers for one order at different times carry the same ids and created_at."""
    first = created_result(request(), ORDER, requested_at=REQUESTED, now=NOW)
    later = created_result(request(request_id=None), ORDER, requested_at=NOW + 5, now=NOW + 6)
    ignore = {"answered_at", "requested_at", "request_id"}
    assert first.model_dump(exclude=ignore) == later.model_dump(exclude=ignore)


def test_rejected_result_lists_errors_and_omits_unknown_headers():
    """A rejected result lists each field error; absent merchant/request id add no header."""
    invalid = Invalid(
        errors=(
            FieldError(
                field="total_fee", message="Input should be greater than 0", type="greater_than"
            ),
            FieldError(field="buyer_id", message="buyer_id or ...", type="buyer_missing"),
        ),
        merchant_id=None,
        mch_trade_id="T1",
        total_fee=None,
        request_id=None,
    )
    value, headers = encode_result(rejected_result(invalid, requested_at=None, now=NOW))
    parsed = parse_order_result(value)
    assert parsed.status == "rejected"
    assert [e.field for e in parsed.errors] == ["total_fee", "buyer_id"]
    assert headers == [("pooul-status", b"rejected")]


def test_failed_result_round_trip():
    """A failed result carries reason, code, msg and retryable."""
    result = failed_result(
        request(),
        reason="platform_refused",
        code=200,
        msg="unknown merchant",
        retryable=False,
        requested_at=REQUESTED,
        now=NOW,
    )
    parsed = parse_order_result(encode_result(result)[0])
    assert parsed.status == "failed"
    assert (parsed.reason, parsed.code, parsed.msg, parsed.retryable) == (
        "platform_refused",
        200,
        "unknown merchant",
        False,
    )


def test_parse_rejects_unknown_status():
    """A result with a status outside the contract does not parse."""
    with pytest.raises(ValidationError):
        parse_order_result(orjson.dumps({"status": "maybe"}))


def test_created_signal_for_the_trades_worker():
    """The signal carries merchant, mch_trade_id, expected amount and expiry, with kind headers."""
    value, headers = encode_signal(created_signal(request(), ORDER))
    signal = parse_trade_signal(value)
    assert signal.kind == "order_created"
    assert (signal.trade_id, signal.merchant_id, signal.mch_trade_id, signal.total_fee) == (
        "P1",
        "888",
        "T1",
        500,
    )
    assert signal.expires_at == datetime.fromtimestamp(NOW + 7200, UTC)
    assert signal.request_id == "req-1"
    assert dict(headers) == {
        "pooul-kind": b"order_created",
        "pooul-merchant-id": b"888",
        "pooul-request-id": b"req-1",
    }
