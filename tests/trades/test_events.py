"""Payment events: CloudEvents 1.0 shape, deterministic ids, normalised data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.events import EVENT_TYPES, PaymentEvent
from schemas.pooul import QueryData
from schemas.trade_state import TradeState
from worker.trades.events import build_event, encode_event, event_headers, event_id
from worker.trades.state import TradeRecord

M = "888100000000001"
CONFIRMED_AT = datetime(2024, 5, 1, 8, 0, 1, 250000, tzinfo=UTC)


def answer(state: int = 0, **fields: Any) -> QueryData:
    values: dict[str, Any] = {
        "merchant_id": M,
        "trade_id": "T1",
        "mch_trade_id": "ORDER-1",
        "out_trade_id": "OUT-1",
        "ch_trade_id": "2024050122001",
        "pay_type": "alipay.jsapi",
        "trade_state": state,
        "total_fee": "1234",
        "fee_type": "CNY",
        "time_end": "20240501160000",
        "buyer_logon_id": "ab***@example.com",
        "buyer_user_id": "2088000000000001",
        "fund_bill_list": '[{"fund_channel": "ALIPAYACCOUNT", "amount": "12.34"}]',
        "attach": "cart=7",
        **fields,
    }
    return QueryData.model_validate(values)


def record(**fields: Any) -> TradeRecord:
    values: dict[str, Any] = {
        "trade_id": "T1",
        "merchant_id": M,
        "mch_trade_id": "ORDER-1",
        "expected_fee": 1234,
        "owned": True,
        "first_seen": 0.0,
        "updated_at": 0.0,
        **fields,
    }
    return TradeRecord(**values)


def build(state: int = 0, *, rec: TradeRecord | None = None, **fields: Any) -> PaymentEvent:
    return build_event(
        answer(state, **fields),
        rec or record(),
        confirmed_by="notify",
        confirmed_at=CONFIRMED_AT,
        source_base="/pooul-worker/trades",
    )


def test_event_id_is_deterministic_per_fact_and_distinct_across_facts() -> None:
    """Same (merchant, trade, state) → same id; any component changed → another id."""
    base = event_id(M, "T1", TradeState.PAID)
    assert base == event_id(M, "T1", TradeState.PAID)
    others = {
        event_id(M, "T1", TradeState.REFUND_REQUESTED),
        event_id(M, "T2", TradeState.PAID),
        event_id("888100000000002", "T1", TradeState.PAID),
    }
    assert base not in others and len(others) == 3
    assert build().id == base


def test_paid_event_is_structured_cloudevent_with_normalised_data() -> None:
    """Envelope attributes, fen amounts, UTC RFC 3339 times and parsed fund bills."""
    event = build()
    doc = orjson.loads(encode_event(event))
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "com.pooul.payment.succeeded"
    assert doc["source"] == f"/pooul-worker/trades/merchants/{M}"
    assert doc["subject"] == "ORDER-1"
    assert doc["datacontenttype"] == "application/json"
    # 16:00 China time is 08:00 UTC.
    assert doc["time"] == "2024-05-01T08:00:00.000Z"
    data = doc["data"]
    assert data["total_fee"] == 1234 and isinstance(data["total_fee"], int)
    assert data["trade_state"] == 0 and data["status"] == "paid"
    assert data["fund_bills"] == [{"fund_channel": "ALIPAYACCOUNT", "amount": 1234}]
    assert data["paid_at"] == "2024-05-01T08:00:00.000Z"
    assert data["confirmed_at"] == "2024-05-01T08:00:01.250Z"
    assert data["confirmed_by"] == "notify"
    assert data["amount_checked"] is True
    assert (data["currency"], data["attach"], data["ch_trade_id"]) == (
        "CNY",
        "cart=7",
        "2024050122001",
    )
    assert PaymentEvent.model_validate_json(encode_event(event)) == event


@pytest.mark.parametrize("state", sorted(EVENT_TYPES))
def test_every_published_state_maps_to_its_type(state: TradeState) -> None:
    """trade_state 0, 7, 3, 4, 5, 1 give succeeded, failed, closed, reversed, revoked, refund_requested."""
    event = build(int(state))
    assert event.type == EVENT_TYPES[state]
    assert event.data.status == state.label


@pytest.mark.parametrize("state", [TradeState.NOT_PAID, TradeState.PAYING, TradeState.INITIAL])
def test_not_final_states_build_no_event(state: TradeState) -> None:
    """Unpaid/paying/initial are not facts: building an event for them fails."""
    with pytest.raises(KeyError):
        build(int(state))


def test_closed_event_without_time_end_uses_confirmation_time_and_order_amount() -> None:
    """A closed answer without time_end or total_fee takes the confirmation time and the order's amount."""
    event = build(3, time_end=None, total_fee=None, fund_bill_list=None)
    assert event.time == CONFIRMED_AT
    assert event.data.paid_at is None
    assert event.data.total_fee == 1234
    assert event.data.fund_bills is None


def test_unparseable_fund_bills_do_not_hold_back_the_event() -> None:
    """A malformed fund_bill_list yields fund_bills=null, the event is still built."""
    event = build(fund_bill_list="not json")
    assert event.data.fund_bills is None
    assert event.type == "com.pooul.payment.succeeded"


def test_unowned_trade_event_says_the_amount_was_not_checked() -> None:
    """Without an order-created signal the event carries amount_checked=false."""
    event = build(rec=record(expected_fee=None, owned=False))
    assert event.data.amount_checked is False


def test_headers_carry_the_structured_content_type_and_ids() -> None:
    """Headers let consumers filter by merchant, trade and type without parsing the value."""
    headers = dict(event_headers(build()))
    assert headers["content-type"].startswith(b"application/cloudevents+json")
    assert headers["pooul-merchant-id"] == M.encode()
    assert headers["pooul-trade-id"] == b"T1"
    assert headers["pooul-event-type"] == b"com.pooul.payment.succeeded"


def test_event_model_rejects_naive_times_and_unknown_types() -> None:
    """The schema refuses what downstream could misread: naive times, made-up types."""
    doc = orjson.loads(encode_event(build()))
    with pytest.raises(ValueError):
        PaymentEvent.model_validate({**doc, "time": "2024-05-01T08:00:00"})
    with pytest.raises(ValueError):
        PaymentEvent.model_validate({**doc, "type": "com.pooul.payment.maybe"})


def test_event_json_schema_exports() -> None:
    """The model has a JSON Schema naming the CloudEvents attributes (exported by the stack)."""
    schema = PaymentEvent.model_json_schema(mode="serialization")
    assert {"id", "source", "type", "subject", "time", "data"} <= set(schema["required"])


def test_times_of_a_refund_reversal_or_revocation_are_not_the_payments() -> None:
    """`time_end` is the payment's completion: it is `paid_at` of a paid trade and of what
    follows a payment, but the event time of a refund requested / reversed / revoked trade is
    the confirmation time (the query does not tell theirs); a failed trade has no `paid_at`."""
    paid = build(0)
    assert paid.time == paid.data.paid_at != CONFIRMED_AT
    for state in (1, 4, 5):
        later = build(state)
        assert later.data.paid_at == paid.data.paid_at
        assert later.time == CONFIRMED_AT
    failed = build(7)
    assert failed.data.paid_at is None
    assert failed.time == paid.time  # when the attempt completed
