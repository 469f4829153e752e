"""The sandbox's platform orders, in memory, with the notifications sent for each.

An order is what the platform keeps after a unified order; the channel side (paid, failed,
closed) fills the payment fields. Every notification and every delivery attempt is kept so a
test can see exactly what the merchant's endpoint was sent and what it answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DeliveryAttempt", "Notification", "Order", "OrderStore", "Outcome", "yuan"]

Outcome = Literal["success", "rejected", "timeout", "connection_error"]
NotificationStatus = Literal["pending", "delivered", "gave_up", "lost", "cancelled"]


def yuan(fen: int) -> str:
    """Fen as the platform's yuan string: 12 → "0.12"."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


@dataclass(slots=True)
class DeliveryAttempt:
    """One HTTP POST of a notification (duplicates injected by faults have `copy` > 0)."""

    delivery: int  # 1..10, the platform's delivery number
    copy: int
    at: float  # Unix seconds when the POST started
    elapsed_ms: float
    outcome: Outcome
    http_status: int | None = None
    body: str = ""  # the merchant's answer, first 200 characters
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery": self.delivery,
            "copy": self.copy,
            "at": self.at,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "outcome": self.outcome,
            "http_status": self.http_status,
            "body": self.body,
            "error": self.error,
        }


@dataclass(slots=True)
class Notification:
    """One notification (a state change, or a forged claim) and its delivery attempts."""

    id: str
    kind: Literal["state", "forged"]
    trade_state: int  # what the notify claims
    data: dict[str, Any]  # the signed `data` object, identical on every delivery
    created_at: float
    status: NotificationStatus = "pending"
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "trade_state": self.trade_state,
            "status": self.status,
            "created_at": self.created_at,
            "deliveries": len({a.delivery for a in self.attempts}),
            "data": self.data,
        }


@dataclass(slots=True)
class Order:
    """A platform order. Payment fields are set when the channel side settles it."""

    trade_id: str
    merchant_id: str
    mch_trade_id: str
    pay_type: str
    body: str
    total_fee: int  # ordered amount, fen
    notify_url: str
    spbill_create_ip: str
    token_id: str
    pay_url: str
    appid: str
    created_at: float
    buyer_id: str | None = None
    buyer_logon_id: str | None = None
    attach: str | None = None
    device_info: str | None = None
    time_start: int | None = None
    time_expire: int | None = None
    trade_state: int = 2  # not paid
    paid_fee: int | None = None  # what the buyer paid (may differ, for mismatch tests)
    out_trade_id: str | None = None
    ch_trade_id: str | None = None
    time_end: int | None = None
    openid: str | None = None
    buyer_user_id: str | None = None
    paid_logon_id: str | None = None
    bank_type: str | None = None
    fund_channel: str | None = None
    closed_by: str | None = None
    notifications: list[Notification] = field(default_factory=list)

    def is_expired(self, now: float) -> bool:
        return self.time_expire is not None and now >= self.time_expire

    @property
    def settled_fee(self) -> int:
        """The amount the platform reports: what was paid once paid, else what was ordered."""
        return self.paid_fee if self.paid_fee is not None else self.total_fee

    def fund_bill_list(self) -> str | None:
        """A JSON *string* holding the funding sources, amounts in yuan (as the platform sends)."""
        if self.paid_fee is None or self.fund_channel is None:
            return None
        return f'[{{"fund_channel":"{self.fund_channel}","amount":"{yuan(self.paid_fee)}"}}]'

    def as_json(self) -> dict[str, Any]:
        """The control API's view: every field, plus notifications and their attempts."""
        attempts = [
            {"notification_id": n.id, "kind": n.kind, "trade_state": n.trade_state, **a.as_json()}
            for n in self.notifications
            for a in n.attempts
        ]
        return {
            "trade_id": self.trade_id,
            "merchant_id": self.merchant_id,
            "mch_trade_id": self.mch_trade_id,
            "pay_type": self.pay_type,
            "body": self.body,
            "total_fee": self.total_fee,
            "paid_fee": self.paid_fee,
            "trade_state": self.trade_state,
            "notify_url": self.notify_url,
            "spbill_create_ip": self.spbill_create_ip,
            "token_id": self.token_id,
            "pay_url": self.pay_url,
            "appid": self.appid,
            "buyer_id": self.buyer_id,
            "buyer_logon_id": self.buyer_logon_id,
            "attach": self.attach,
            "time_start": self.time_start,
            "time_expire": self.time_expire,
            "created_at": self.created_at,
            "out_trade_id": self.out_trade_id,
            "ch_trade_id": self.ch_trade_id,
            "time_end": self.time_end,
            "fund_bill_list": self.fund_bill_list(),
            "closed_by": self.closed_by,
            "notifications": [n.as_json() for n in self.notifications],
            "notify_attempts": attempts,
        }


# Forgotten orders whose mch_trade_id is still refused, per order kept.
_RETIRED_PER_ORDER = 10


class OrderStore:
    """Orders by `trade_id`, with the `(merchant_id, mch_trade_id)` uniqueness the platform enforces.

    At most `max_orders` are kept: a sandbox left running (or load-tested) must not grow until
    it runs out of memory, so past the limit the oldest orders are forgotten (a query answers
    301). Their `mch_trade_id` stays taken — the platform never lets one be reused, and a
    second order under it is the double payment its docs warn of — for the last
    `_RETIRED_PER_ORDER` × `max_orders` forgotten orders (a few dozen bytes each). `evicted`
    counts them.
    """

    def __init__(self, *, max_orders: int | None = None) -> None:
        if max_orders is not None and max_orders < 1:
            raise ValueError(f"max_orders must be at least 1, got {max_orders}")
        self.max_orders = max_orders
        self.evicted = 0
        self._orders: dict[str, Order] = {}
        self._by_mch: dict[tuple[str, str], str] = {}
        self._retired: dict[tuple[str, str], None] = {}  # mch_trade_ids of forgotten orders

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, trade_id: object) -> bool:
        return trade_id in self._orders

    def add(self, order: Order) -> None:
        key = (order.merchant_id, order.mch_trade_id)
        if self.mch_trade_id_used(order.merchant_id, order.mch_trade_id):
            raise KeyError(f"mch_trade_id {order.mch_trade_id!r} already used")
        self._orders[order.trade_id] = order
        self._by_mch[key] = order.trade_id
        if self.max_orders is not None and len(self._orders) > self.max_orders:
            self._forget(next(iter(self._orders.values())))  # dicts keep insertion order

    def _forget(self, order: Order) -> None:
        key = (order.merchant_id, order.mch_trade_id)
        del self._orders[order.trade_id]
        del self._by_mch[key]
        self._retired[key] = None
        if (
            self.max_orders is not None
            and len(self._retired) > _RETIRED_PER_ORDER * self.max_orders
        ):
            del self._retired[next(iter(self._retired))]
        self.evicted += 1

    def mch_trade_id_used(self, merchant_id: str, mch_trade_id: str) -> bool:
        """Whether the merchant already used this `mch_trade_id` (forgotten orders included)."""
        key = (merchant_id, mch_trade_id)
        return key in self._by_mch or key in self._retired

    def get(self, trade_id: str) -> Order | None:
        return self._orders.get(trade_id)

    def by_mch_trade_id(self, merchant_id: str, mch_trade_id: str) -> Order | None:
        trade_id = self._by_mch.get((merchant_id, mch_trade_id))
        return self._orders[trade_id] if trade_id is not None else None

    def find(
        self, *, merchant_id: str | None = None, mch_trade_id: str | None = None
    ) -> list[Order]:
        return [
            order
            for order in self._orders.values()
            if (merchant_id is None or order.merchant_id == merchant_id)
            and (mch_trade_id is None or order.mch_trade_id == mch_trade_id)
        ]
