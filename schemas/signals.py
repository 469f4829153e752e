"""Records on the trade-signals topic (key = `trade_id`): what may change a trade.

- `NotifySignal` — written by the ingress: the raw, signature-verified notify body.
- `OrderCreatedSignal` — written by the orders worker: the amount and expiry to reconcile against.

Headers carry the kind and merchant so tools can filter without parsing the value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "KIND_HEADER",
    "MERCHANT_HEADER",
    "REQUEST_ID_HEADER",
    "NotifySignal",
    "OrderCreatedSignal",
    "TradeSignal",
    "parse_trade_signal",
]

KIND_HEADER = "pooul-kind"
MERCHANT_HEADER = "pooul-merchant-id"
REQUEST_ID_HEADER = "pooul-request-id"


class NotifySignal(BaseModel):
    """A notify the ingress verified: `body` is the exact HTTP body, for audit and re-verification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["notify"] = "notify"
    trade_id: str
    merchant_id: str
    received_at: datetime
    body: str


class OrderCreatedSignal(BaseModel):
    """The platform accepted an order: what the trades worker needs to check and reconcile it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["order_created"] = "order_created"
    trade_id: str
    merchant_id: str
    mch_trade_id: str
    total_fee: int = Field(gt=0, description="expected amount in fen")
    expires_at: datetime
    created_at: datetime
    request_id: str | None = None


TradeSignal = Annotated[NotifySignal | OrderCreatedSignal, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[NotifySignal | OrderCreatedSignal] = TypeAdapter(TradeSignal)


def parse_trade_signal(value: bytes) -> NotifySignal | OrderCreatedSignal:
    """Parse a trade-signals record value; raises `pydantic.ValidationError` on bad input."""
    return _ADAPTER.validate_json(value)
