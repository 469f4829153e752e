"""Records on the trade-signals topic (key = `trade_id`): what may change a trade.

- `NotifySignal` — written by the ingress: the raw, signature-verified notify body.
- `OrderCreatedSignal` — written by the orders worker: the amount and expiry to reconcile against.
- `RecheckSignal`, `ResolveSignal` — written by an operator (`pooul-worker trade recheck|resolve`)
  for a trade that waits for a human (flagged) or was given up on.

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
    "AnyTradeSignal",
    "NotifySignal",
    "OperatorSignal",
    "OrderCreatedSignal",
    "RecheckSignal",
    "ResolveSignal",
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


class _OperatorSignal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trade_id: str = Field(min_length=1, max_length=64)
    requested_by: str = Field(min_length=1, max_length=64, description="who asked (audit)")
    requested_at: datetime


class RecheckSignal(_OperatorSignal):
    """Query the trade again now and apply the usual rules, flag or not: a flagged trade is
    published only if the platform's answer no longer contradicts the order (else flagged and
    dead-lettered again); a trade given up on is published if the answer is final. Refused for
    a resolved trade and for a merchant contradiction."""

    kind: Literal["recheck"] = "recheck"
    note: str | None = Field(default=None, max_length=500)


class ResolveSignal(_OperatorSignal):
    """A human settled a flagged trade outside this service (e.g. refunded the buyer): it leaves
    the flagged state for `resolved`. Nothing is published; later notifies and rechecks are
    skipped."""

    kind: Literal["resolve"] = "resolve"
    note: str = Field(min_length=1, max_length=500, description="what was done, for the audit")


OperatorSignal = RecheckSignal | ResolveSignal
AnyTradeSignal = NotifySignal | OrderCreatedSignal | RecheckSignal | ResolveSignal
TradeSignal = Annotated[AnyTradeSignal, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AnyTradeSignal] = TypeAdapter(TradeSignal)


def parse_trade_signal(value: bytes) -> AnyTradeSignal:
    """Parse a trade-signals record value; raises `pydantic.ValidationError` on bad input."""
    return _ADAPTER.validate_json(value)
