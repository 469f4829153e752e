"""The sandbox's platform: orders, state transitions, notifications, fault draws and call stats.

The HTTP layers (`gateway` for merchants, `control` for the buyer and the channel) only parse,
validate and answer; every change to an order happens here, without awaiting in between, so
concurrent calls cannot interleave inside one transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from schemas.trade_state import TradeState
from worker.pooul.signing import sign
from worker.sandbox.faults import Faults
from worker.sandbox.ids import IdFactory
from worker.sandbox.notifier import Notifier
from worker.sandbox.store import Notification, Order, OrderStore, yuan
from worker.settings import MerchantKeys

__all__ = [
    "PAYABLE_STATES",
    "SANDBOX_KEY",
    "NewOrder",
    "Sandbox",
    "TransitionError",
    "loosened",
    "state_name",
]

log = logging.getLogger(__name__)

PAID = TradeState.PAID.value
REFUND_REQUESTED = TradeState.REFUND_REQUESTED.value
CLOSED = TradeState.CLOSED.value
FAILED = TradeState.FAILED.value
# Not final: the buyer can still pay, or the payment fail.
PAYABLE_STATES = frozenset(
    {TradeState.INITIAL.value, TradeState.NOT_PAID.value, TradeState.PAYING.value}
)
_FUND_CHANNEL = "ALIPAYACCOUNT"


class TransitionError(Exception):
    """The order cannot make that move (already paid, closed, expired...): HTTP 409."""


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated unified-order request."""

    merchant_id: str
    mch_trade_id: str
    pay_type: str
    body: str
    total_fee: int
    notify_url: str
    spbill_create_ip: str
    buyer_id: str | None
    buyer_logon_id: str | None
    attach: str | None
    device_info: str | None
    time_start: int | None
    time_expire: int | None


def state_name(state: int) -> str:
    """`not paid`, `payment failed`... for messages and the cashier page."""
    if state == FAILED:
        return "payment failed"
    try:
        return TradeState(state).label.replace("_", " ")
    except ValueError:
        return f"state {state}"


class Sandbox:
    """One sandboxed platform: shared by the gateway and control handlers of one server.

    Args:
        merchant_keys: the merchants the platform knows (`POOUL_MERCHANT_KEYS`).
        time_scale: multiplies notify retry intervals.
        seed: makes fault draws and the random parts of ids reproducible.
        notify_timeout: seconds a merchant has to answer a notify (platform: 5).
        public_url: base URL of `pay_url`; None uses the address the pay call came in on.
        max_orders: orders kept in memory (None: no limit); past it the oldest are forgotten.
    """

    def __init__(
        self,
        *,
        merchant_keys: MerchantKeys,
        time_scale: float = 1.0,
        seed: int | None = None,
        notify_timeout: float = 5.0,
        public_url: str | None = None,
        max_orders: int | None = None,
    ) -> None:
        self.merchant_keys = merchant_keys
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url must be an absolute http(s) URL, got {public_url!r}")
        self.public_url = public_url.rstrip("/") if public_url else None
        # Two streams: how many ids were made must not shift which calls a fault hits.
        self.faults = Faults(rng=random.Random(seed))
        self.ids = IdFactory(rng=random.Random(None if seed is None else f"ids-{seed}"))
        self.store = OrderStore(max_orders=max_orders)
        self.notifier = Notifier(
            merchant_keys=merchant_keys,
            faults=self.faults,
            time_scale=time_scale,
            answer_timeout=notify_timeout,
        )
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.closing = asyncio.Event()
        self._appids: dict[str, str] = {}
        self._notifications = 0

    async def start(self) -> None:
        await self.notifier.start()

    async def stop(self) -> None:
        self.closing.set()
        await self.notifier.stop()

    async def pause(self, seconds: float) -> None:
        """Sleep for injected latency or a hang, cut short when the server stops."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), seconds)

    def count(self, endpoint: str, outcome: int | str) -> None:
        """Count one gateway call by what it was answered (a code, `http_500`, ...)."""
        self.calls[endpoint][str(outcome)] += 1

    def stats(self) -> dict[str, Any]:
        """What `GET /sandbox/stats` shows."""
        return {
            "calls": {endpoint: dict(codes) for endpoint, codes in self.calls.items()},
            "notify": dict(self.notifier.outcomes),
            "notify_pending": self.notifier.pending,
            "orders": len(self.store),
            "orders_evicted": self.store.evicted,
            "max_orders": self.store.max_orders,
        }

    # --- signing -------------------------------------------------------------------------

    def sign_data(self, merchant_id: str, data: dict[str, Any], *, wrong: bool = False) -> str:
        """The response signature over `data`; `wrong` signs with a key the merchant lacks."""
        key = self.merchant_keys.signing_key(merchant_id)
        if key is None:
            raise LookupError(f"no key for merchant {merchant_id}")
        return sign(data, key + "-not-the-merchant-key" if wrong else key)

    # --- orders --------------------------------------------------------------------------

    def appid(self, merchant_id: str) -> str:
        """A merchant's Alipay app id: one per merchant, stable for the sandbox's life."""
        if merchant_id not in self._appids:
            self._appids[merchant_id] = self.ids.appid()
        return self._appids[merchant_id]

    def create_order(self, request: NewOrder, *, base_url: str) -> Order:
        """Create the platform order; the caller has checked `mch_trade_id` is unused."""
        trade_id = self.ids.trade_id()
        while trade_id in self.store:
            trade_id = self.ids.trade_id()
        order = Order(
            trade_id=trade_id,
            merchant_id=request.merchant_id,
            mch_trade_id=request.mch_trade_id,
            pay_type=request.pay_type,
            body=request.body,
            total_fee=request.total_fee,
            notify_url=request.notify_url,
            spbill_create_ip=request.spbill_create_ip,
            token_id=self.ids.token_id(),
            pay_url=f"{base_url}/sandbox/cashier/{trade_id}",
            appid=self.appid(request.merchant_id),
            created_at=time.time(),
            buyer_id=request.buyer_id,
            buyer_logon_id=request.buyer_logon_id,
            attach=request.attach,
            device_info=request.device_info,
            time_start=request.time_start,
            time_expire=request.time_expire,
        )
        evicted = self.store.evicted
        self.store.add(order)
        if evicted == 0 and self.store.evicted:
            log.warning(
                "sandbox order limit reached: the oldest orders are forgotten from now on",
                extra={"max_orders": self.store.max_orders},
            )
        config = self.faults.for_merchant(order.merchant_id)
        if self.faults.hit(config.forge_notify_rate):
            self.forge(order, trade_state=PAID)
        return order

    def pay(self, order: Order, *, paid_fee: int | None = None, notify: bool = True) -> None:
        """The buyer paid (`paid_fee` defaults to the ordered amount): state 0, notify sent."""
        self._check_open(order, "pay")
        if paid_fee is not None and paid_fee <= 0:
            raise ValueError("total_fee must be a positive amount in fen")
        order.trade_state = PAID
        order.paid_fee = order.total_fee if paid_fee is None else paid_fee
        order.out_trade_id = self.ids.out_trade_id()
        order.ch_trade_id = self.ids.ch_trade_id()
        order.time_end = int(time.time())
        order.buyer_user_id = order.buyer_id or self.ids.buyer_user_id()
        order.paid_logon_id = self.ids.masked_logon_id(order.buyer_logon_id)
        order.openid = self.ids.openid()
        order.fund_channel = _FUND_CHANNEL
        order.bank_type = _FUND_CHANNEL
        if notify:
            self._notify(order)

    def fail(self, order: Order, *, notify: bool = True) -> None:
        """The payment failed at the channel: state 7, notify sent."""
        self._check_open(order, "fail")
        order.trade_state = FAILED
        order.ch_trade_id = self.ids.ch_trade_id()
        order.time_end = int(time.time())
        if notify:
            self._notify(order)

    def refund(self, order: Order, *, notify: bool = True) -> None:
        """The merchant asked for a refund of a paid order: state 1 (refund requested), notify
        sent. The amount, ids and payment time stay the payment's."""
        if order.trade_state != PAID:
            raise TransitionError(
                f"cannot refund order {order.trade_id}: it is {state_name(order.trade_state)} "
                f"(trade_state {order.trade_state}); only a paid order can be refunded"
            )
        order.trade_state = REFUND_REQUESTED
        if notify:
            self._notify(order)

    def close(self, order: Order, *, by: str, notify: bool) -> bool:
        """Close an unpaid order (state 3). False when it already was closed (nothing changes)."""
        if order.trade_state == CLOSED:
            return False
        if order.trade_state not in PAYABLE_STATES:
            raise TransitionError(
                f"order {order.trade_id} is {state_name(order.trade_state)} "
                f"(trade_state {order.trade_state}) and cannot be closed"
            )
        order.trade_state = CLOSED
        order.closed_by = by
        if notify:
            self._notify(order)
        return True

    def forge(self, order: Order, *, trade_state: int) -> Notification:
        """Send a validly signed notify claiming `trade_state`; the order itself is unchanged."""
        if trade_state == order.trade_state:
            raise TransitionError(
                f"order {order.trade_id} is already in trade_state {trade_state}; "
                "a forged notify must claim a state the order does not have"
            )
        data = self._base_data(order, trade_state=trade_state)
        if trade_state == PAID:
            fee = order.total_fee
            data.update(
                out_trade_id=self.ids.out_trade_id(),
                ch_trade_id=self.ids.ch_trade_id(),
                time_end=int(time.time()),
                buyer_user_id=order.buyer_id or self.ids.buyer_user_id(),
                buyer_logon_id=self.ids.masked_logon_id(order.buyer_logon_id),
                openid=self.ids.openid(),
                fund_bill_list=f'[{{"fund_channel":"{_FUND_CHANNEL}","amount":"{yuan(fee)}"}}]',
                bank_type=_FUND_CHANNEL,
            )
        notification = self._new_notification(kind="forged", trade_state=trade_state, data=data)
        self.notifier.dispatch(order, notification)
        return notification

    def _check_open(self, order: Order, action: str) -> None:
        if order.trade_state not in PAYABLE_STATES:
            raise TransitionError(
                f"cannot {action} order {order.trade_id}: it is {state_name(order.trade_state)} "
                f"(trade_state {order.trade_state})"
            )
        if order.is_expired(time.time()):
            raise TransitionError(
                f"cannot {action} order {order.trade_id}: it expired at time_expire "
                f"{order.time_expire} and can only be closed"
            )

    def _notify(self, order: Order) -> None:
        data = self.notify_data(order)
        if self.faults.for_merchant(order.merchant_id).loose_types:
            data = loosened(data)
        notification = self._new_notification(
            kind="state", trade_state=order.trade_state, data=data
        )
        self.notifier.dispatch(order, notification)

    def _new_notification(
        self, *, kind: Any, trade_state: int, data: dict[str, Any]
    ) -> Notification:
        self._notifications += 1
        return Notification(
            id=f"n{self._notifications}",
            kind=kind,
            trade_state=trade_state,
            data=data,
            created_at=time.time(),
        )

    # --- data objects --------------------------------------------------------------------

    def _base_data(self, order: Order, *, trade_state: int) -> dict[str, Any]:
        return {
            "merchant_id": order.merchant_id,
            "trade_id": order.trade_id,
            "mch_trade_id": order.mch_trade_id,
            "pay_type": order.pay_type,
            "trade_state": trade_state,
            "total_fee": order.settled_fee,
            "fee_type": "CNY",
            "nonce_str": self.ids.nonce(),
            "attach": order.attach,
        }

    def notify_data(self, order: Order) -> dict[str, Any]:
        """The notify `data` for the order's current state (absent fields left out)."""
        data = self._base_data(order, trade_state=order.trade_state)
        data.update(
            out_trade_id=order.out_trade_id,
            ch_trade_id=order.ch_trade_id,
            time_end=order.time_end,
            openid=order.openid,
            buyer_logon_id=order.paid_logon_id,
            buyer_user_id=order.buyer_user_id,
            fund_bill_list=order.fund_bill_list(),
            bank_type=order.bank_type,
        )
        return {name: value for name, value in data.items() if value is not None}

    def query_data(self, order: Order, *, pay_link: bool = True) -> dict[str, Any]:
        """The query `data`: the notify fields plus amounts, and (sandbox convenience, unless
        `pay_link` is off) the order's `token_id`/`pay_url`/`appid` so a caller can recover an
        order after code 107; the platform's documented query does not promise them."""
        data = self.notify_data(order)
        if order.paid_fee is not None:
            paid = yuan(order.paid_fee)
            data.update(
                coupon_fee=0,
                buyer_pay_amount=paid,
                receipt_amount=paid,
                invoice_amount=paid,
                point_amount="0.00",
            )
        if pay_link:
            data.update(token_id=order.token_id, pay_url=order.pay_url, appid=order.appid)
        return data


def loosened(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as the docs' own examples also send it: `total_fee` as a string (`"12"`), and a
    field the docs do not list (the platform may add fields). Signed as sent, like any data."""
    return {**data, "total_fee": str(data["total_fee"]), "sandbox_unlisted": "not in the docs"}


SANDBOX_KEY = web.AppKey("sandbox", Sandbox)
