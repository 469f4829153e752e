"""The headers documented in the contracts are the headers the producers really write."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import PaymentEvent, PaymentEventData
from schemas.orders import OrderCreated, OrderFailed, OrderRejected
from schemas.registry import MESSAGES, Message
from schemas.signals import OrderCreatedSignal
from worker.ingress.notify import VerifiedNotify, build_record
from worker.orders.results import encode_result, encode_signal
from worker.trades.events import event_headers

_NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def _documented(name: str) -> Message:
    return next(m for m in MESSAGES if m.name == name)


def _assert_matches(name: str, written: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]):
    message = _documented(name)
    names = [header for header, _ in written]
    documented = {h.name for h in message.headers}
    required = {h.name for h in message.headers if h.required}
    assert set(names) <= documented, f"{name} writes undocumented headers {set(names) - documented}"
    assert required <= set(names), f"{name} lacks documented required headers"


def test_notify_signal_headers_are_documented() -> None:
    """The ingress's trade-signals record carries exactly documented headers."""
    notify = VerifiedNotify(
        trade_id="T1", merchant_id="888", mch_trade_id="M1", trade_state="0", body=b"{}", sign="S"
    )
    _assert_matches("NotifySignal", build_record(notify, received_at=_NOW).headers)


def test_order_created_signal_headers_are_documented() -> None:
    """The orders worker's order-created signal carries exactly documented headers."""
    signal = OrderCreatedSignal(
        trade_id="T1",
        merchant_id="888",
        mch_trade_id="M1",
        total_fee=1,
        expires_at=_NOW,
        created_at=_NOW,
        request_id="r1",
    )
    _assert_matches("OrderCreatedSignal", encode_signal(signal)[1])


def test_order_result_headers_are_documented() -> None:
    """Every kind of order result carries exactly documented headers, with or without ids."""
    created = OrderCreated(
        merchant_id="888",
        mch_trade_id="M1",
        total_fee=1,
        request_id="r1",
        answered_at=_NOW,
        trade_id="T1",
        created_at=_NOW,
        expires_at=_NOW,
    )
    rejected = OrderRejected(
        merchant_id=None,
        mch_trade_id=None,
        total_fee=None,
        answered_at=_NOW,
        errors=[{"field": "total_fee", "message": "missing", "type": "missing"}],
    )
    failed = OrderFailed(
        merchant_id="888",
        mch_trade_id="M1",
        total_fee=1,
        answered_at=_NOW,
        reason="platform_refused",
        code=200,
        msg="unknown merchant",
        retryable=False,
    )
    for result in (created, rejected, failed):
        _assert_matches(type(result).__name__, encode_result(result)[1])


def test_payment_event_headers_are_documented() -> None:
    """The trades worker's payment event record carries exactly documented headers."""
    event = PaymentEvent(
        id="00000000-0000-5000-8000-000000000000",
        source="/pooul-worker/merchants/888",
        type="com.pooul.payment.succeeded",
        subject="M1",
        time=_NOW,
        data=PaymentEventData(
            merchant_id="888",
            mch_trade_id="M1",
            trade_id="T1",
            trade_state=0,
            status="paid",
            total_fee=1,
            amount_checked=True,
            confirmed_by="notify",
            confirmed_at=_NOW,
        ),
    )
    _assert_matches("PaymentEvent", event_headers(event))
