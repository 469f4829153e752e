"""Building payment events (CloudEvents 1.0, structured JSON) from verified query answers.

The event id is a UUIDv5 of (merchant_id, trade_id, trade_state): the same fact gets the same id
across retries, restarts and workers, so downstream deduplicates on `id` alone.

    event = build_event(answer, record, confirmed_by="notify", confirmed_at=now, source_base=src)
    await ctx.send(topic, encode_event(event), key=event.subject.encode(), headers=event_headers(event))
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Final, Literal

from schemas.events import (
    EVENT_TYPES,
    PaymentEvent,
    PaymentEventData,
)
from schemas.pooul import FundBill, QueryData, parse_fund_bills, parse_platform_time
from schemas.trade_state import TradeState
from worker.trades.state import MONEY_STATES, TradeRecord

__all__ = [
    "EVENT_CONTENT_TYPE",
    "EVENT_NAMESPACE",
    "build_event",
    "encode_event",
    "event_headers",
    "event_id",
    "event_source",
]

log = logging.getLogger(__name__)

# Fixed forever: changing it changes every event id and breaks downstream deduplication.
EVENT_NAMESPACE: Final = uuid.UUID("5f0c6f1e-9f5a-5a57-9d1e-70a0f1c0e7a1")
# The Kafka protocol binding's content type for structured-mode CloudEvents.
EVENT_CONTENT_TYPE: Final = b"application/cloudevents+json; charset=UTF-8"


def event_id(merchant_id: str, trade_id: str, state: TradeState) -> str:
    """The deterministic id of "trade `trade_id` of `merchant_id` reached `state`"."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{merchant_id}/{trade_id}/{int(state)}"))


def event_source(source_base: str, merchant_id: str) -> str:
    """`source`: this service (`POOUL_EVENT_SOURCE`) and the merchant, as a URI reference."""
    return f"{source_base.rstrip('/')}/merchants/{merchant_id}"


def _fund_bills(answer: QueryData) -> list[FundBill] | None:
    if not answer.fund_bill_list:
        return None
    try:
        return parse_fund_bills(answer.fund_bill_list)
    except ValueError as exc:
        # Never hold back a confirmed payment over a funding breakdown; say so instead.
        log.warning(
            "unparseable fund_bill_list; event published without fund_bills",
            extra={"trade_id": answer.trade_id, "error": str(exc)},
        )
        return None


# States that follow a payment: the query tells their state, not when they happened.
_FOLLOWS_PAYMENT: Final = MONEY_STATES - {TradeState.PAID}


def _paid_at(answer: QueryData) -> datetime | None:
    try:
        return parse_platform_time(answer.time_end)
    except ValueError:
        log.warning(
            "unparseable time_end; event published without paid_at",
            extra={"trade_id": answer.trade_id, "time_end": answer.time_end},
        )
        return None


def build_event(
    answer: QueryData,
    record: TradeRecord,
    *,
    confirmed_by: Literal["notify", "reconcile"],
    confirmed_at: datetime,
    source_base: str,
) -> PaymentEvent:
    """The event for a verified answer in a published state (`KeyError` for other states).

    `record` supplies what the answer may leave out: the mch_trade_id (from the order or the
    notify) and, for closed/failed trades, the ordered amount.
    """
    state = answer.trade_state
    event_type = EVENT_TYPES[state]
    mch_trade_id = answer.mch_trade_id or record.mch_trade_id
    if not mch_trade_id:
        raise ValueError(f"trade {answer.trade_id}: no mch_trade_id to key the event with")
    total_fee = answer.total_fee if answer.total_fee is not None else record.expected_fee
    if total_fee is None:
        raise ValueError(f"trade {answer.trade_id}: no total_fee in the answer or the order")
    confirmed_at = confirmed_at.astimezone(UTC)
    # `time_end` is when the payment (or the failed attempt) completed: the payment time of a
    # paid trade and of what follows it, never a refund's or a revocation's own time.
    completed_at = _paid_at(answer)
    paid_at = completed_at if state in MONEY_STATES else None
    happened_at = None if state in _FOLLOWS_PAYMENT else completed_at
    data = PaymentEventData(
        merchant_id=answer.merchant_id,
        mch_trade_id=mch_trade_id,
        trade_id=answer.trade_id,
        out_trade_id=answer.out_trade_id,
        ch_trade_id=answer.ch_trade_id,
        pay_type=answer.pay_type,
        trade_state=int(state),
        status=state.label,
        total_fee=total_fee,
        currency=answer.currency,
        paid_at=paid_at,
        buyer_logon_id=answer.buyer_logon_id,
        buyer_user_id=answer.buyer_user_id,
        openid=answer.openid,
        bank_type=answer.bank_type,
        fund_bills=_fund_bills(answer),
        attach=answer.attach,
        amount_checked=record.expected_fee is not None,
        confirmed_by=confirmed_by,
        confirmed_at=confirmed_at,
    )
    return PaymentEvent(
        id=event_id(answer.merchant_id, answer.trade_id, state),
        source=event_source(source_base, answer.merchant_id),
        type=event_type,
        subject=mch_trade_id,
        time=happened_at or confirmed_at,
        data=data,
    )


def encode_event(event: PaymentEvent) -> bytes:
    """The record value: the structured-mode JSON document."""
    return event.model_dump_json().encode()


def event_headers(event: PaymentEvent) -> list[tuple[str, bytes]]:
    """Record headers: the structured-mode content type, plus ids to filter on without parsing."""
    return [
        ("content-type", EVENT_CONTENT_TYPE),
        ("pooul-merchant-id", event.data.merchant_id.encode()),
        ("pooul-trade-id", event.data.trade_id.encode()),
        ("pooul-event-type", event.type.encode()),
    ]
