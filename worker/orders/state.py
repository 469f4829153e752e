"""What the orders worker remembers per `mch_trade_id`: the orders it saw created.

The state of a key (on the compacted `pooul.order-state.v1`, key = `mch_trade_id`) is a JSON
object `{"orders": {merchant_id: {...StoredOrder}}}` — per merchant, because `mch_trade_id` is
only unique within one merchant. A repeated request is answered from here without a platform
call, with the very same ids; 107 recovery by query covers the crash window before the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["StoredOrder", "find_order", "retain_until", "with_order"]


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order the platform confirmed; times are Unix seconds.

    `terms` are the fields of the request that made the order (`decisions.ORDER_TERMS`), so a
    repeat asking for something else is told so; None for entries written before they were kept.
    """

    trade_id: str
    total_fee: int
    token_id: str | None
    pay_url: str | None
    appid: str | None
    created_at: float
    expires_at: float
    terms: Mapping[str, str | int | None] | None = None

    def to_json(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies and costs more than the rest of the state.
        return {
            "trade_id": self.trade_id,
            "total_fee": self.total_fee,
            "token_id": self.token_id,
            "pay_url": self.pay_url,
            "appid": self.appid,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "terms": dict(self.terms) if self.terms is not None else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StoredOrder:
        terms = value.get("terms")
        return cls(
            trade_id=str(value["trade_id"]),
            total_fee=int(value["total_fee"]),
            token_id=value.get("token_id"),
            pay_url=value.get("pay_url"),
            appid=value.get("appid"),
            created_at=float(value["created_at"]),
            expires_at=float(value["expires_at"]),
            terms=terms if isinstance(terms, dict) else None,
        )


def _orders(state: Any) -> dict[str, Any]:
    orders = state.get("orders") if isinstance(state, dict) else None
    return orders if isinstance(orders, dict) else {}


def find_order(state: Any, merchant_id: str) -> StoredOrder | None:
    """The order this merchant created under the key, if the worker saw it created.

    An entry this version cannot read counts as absent: the platform call then answers 107
    and the order is recovered by query, which beats dead-lettering the request.
    """
    entry = _orders(state).get(merchant_id)
    if not isinstance(entry, dict):
        return None
    try:
        return StoredOrder.from_json(entry)
    except (KeyError, TypeError, ValueError):
        return None


def with_order(state: Any, merchant_id: str, order: StoredOrder) -> dict[str, Any]:
    """A new state value with the merchant's order recorded (others kept)."""
    return {"orders": {**_orders(state), merchant_id: order.to_json()}}


def retain_until(state: Any, *, retention: float) -> float:
    """When the key may be forgotten: `retention` seconds after its last order expires.

    An entry this version cannot read (kept as is for the release that wrote it) has no say;
    the state is only written with an order just recorded, so one expiry is always there."""
    expiries = []
    for entry in _orders(state).values():
        try:
            expiries.append(float(entry["expires_at"]))
        except (KeyError, TypeError, ValueError):
            continue
    return max(expiries) + retention
