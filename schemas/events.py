"""Payment events on `payments.events.v1` (key = `mch_trade_id`): CloudEvents 1.0, structured JSON.

The only place a payment becomes a fact for downstream services. Every event was confirmed by a
signature-verified query answer; the same fact (merchant, trade, state) always carries the same
`id`, so a consumer deduplicates on `id` alone.

    event = PaymentEvent.model_validate_json(record.value)
    if event.type == EVENT_TYPES[TradeState.PAID]: ship(event.data.mch_trade_id, event.data.total_fee)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from schemas.pooul import FundBill
from schemas.trade_state import TradeState

__all__ = [
    "EVENT_DATACONTENTTYPE",
    "EVENT_SPECVERSION",
    "EVENT_TYPES",
    "PUBLISHED_STATES",
    "PaymentEvent",
    "PaymentEventData",
]

EVENT_SPECVERSION: Final = "1.0"
EVENT_DATACONTENTTYPE: Final = "application/json"

# trade_state → CloudEvents `type`. States 2 (not paid), 6 (paying) and -1 (initial) are not facts
# yet: nothing is published for them, the trade is rechecked later.
EVENT_TYPES: Final[dict[TradeState, str]] = {
    TradeState.PAID: "com.pooul.payment.succeeded",
    TradeState.FAILED: "com.pooul.payment.failed",
    TradeState.CLOSED: "com.pooul.payment.closed",
    TradeState.REVERSED: "com.pooul.payment.reversed",
    TradeState.REVOKED: "com.pooul.payment.revoked",
    TradeState.REFUND_REQUESTED: "com.pooul.payment.refund_requested",
}
PUBLISHED_STATES: Final = frozenset(EVENT_TYPES)

EventType = Literal[
    "com.pooul.payment.succeeded",
    "com.pooul.payment.failed",
    "com.pooul.payment.closed",
    "com.pooul.payment.reversed",
    "com.pooul.payment.revoked",
    "com.pooul.payment.refund_requested",
]


def _rfc3339(value: datetime) -> str:
    """UTC with a `Z` suffix and millisecond precision, as most CloudEvents SDKs write it."""
    text = value.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


# Aware datetimes only, written as RFC 3339 UTC (`2024-05-01T08:00:00.000Z`).
UtcTime = Annotated[AwareDatetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]


class PaymentEventData(BaseModel):
    """`data` of a payment event: the query's answer, normalised (amounts in fen, times UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    merchant_id: str
    mch_trade_id: str = Field(description="the merchant's order number; the event's key")
    trade_id: str = Field(description="Pooul's order id")
    out_trade_id: str | None = None
    ch_trade_id: str | None = Field(default=None, description="the channel's (Alipay's) trade no")
    pay_type: str | None = None
    trade_state: int = Field(description="the platform's trade_state (0, 1, 3, 4, 5 or 7)")
    status: Literal["paid", "refund_requested", "closed", "reversed", "revoked", "failed"]
    total_fee: int = Field(description="amount in fen", json_schema_extra={"unit": "fen"})
    currency: str = "CNY"
    paid_at: UtcTime | None = Field(
        default=None,
        description="when the buyer paid (`time_end`), for a paid trade and the states that "
        "follow a payment (refund requested, reversed, revoked); null otherwise",
    )
    buyer_logon_id: str | None = None
    buyer_user_id: str | None = None
    openid: str | None = None
    bank_type: str | None = None
    fund_bills: list[FundBill] | None = Field(
        default=None,
        description="funding sources, amounts in fen; null when the platform sent none or an "
        "unparseable list",
    )
    attach: str | None = None
    amount_checked: bool = Field(
        description="true when total_fee was compared with the order's expected amount; false "
        "for trades this service did not create (no order-created signal)"
    )
    confirmed_by: Literal["notify", "reconcile"] = Field(
        description="what triggered the confirming query: a notify, or reconciliation"
    )
    confirmed_at: UtcTime = Field(description="when the confirming query answered")


class PaymentEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = EVENT_SPECVERSION
    id: str = Field(description="deterministic: UUIDv5 of (merchant_id, trade_id, trade_state)")
    source: str = Field(description="URI reference: this service and the merchant")
    type: EventType
    subject: str = Field(description="mch_trade_id")
    time: UtcTime = Field(
        description="the platform's completion time (`time_end`) of a paid, failed or closed "
        "trade, else (none given, or a refund/reversal/revocation, whose own time the query "
        "does not tell) the confirmation time"
    )
    datacontenttype: Literal["application/json"] = EVENT_DATACONTENTTYPE
    data: PaymentEventData
