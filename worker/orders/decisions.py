"""The orders worker's judgements, as pure functions over what it knows.

- a repeat of an order already created: same order, or a conflict (another amount);
- a 107 answered by the platform: the existing order (queried) is ours, or a conflict;
- a fresh success: the order to remember.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.orders import OrderRequest
from schemas.pooul import OrderResponseData, QueryData
from schemas.trade_state import TradeState
from worker.orders.state import StoredOrder

__all__ = ["Conflict", "check_repeat", "new_order", "recover_order", "response_mismatch"]

# Orders that ended without a payment: a 107 naming one cannot be answered `created`.
_ENDED_UNPAID = frozenset(
    {TradeState.CLOSED, TradeState.FAILED, TradeState.REVOKED, TradeState.REVERSED}
)


@dataclass(frozen=True, slots=True)
class Conflict:
    """The `mch_trade_id` already names a different order; `trade_id` is that order."""

    msg: str
    trade_id: str | None


def _expires_at(request: OrderRequest, *, created_at: float, default_ttl: float) -> float:
    return float(request.time_expire) if request.time_expire else created_at + default_ttl


def new_order(
    request: OrderRequest, response: OrderResponseData, *, now: float, default_ttl: float
) -> StoredOrder:
    """The order the platform just created for `request`."""
    return StoredOrder(
        trade_id=response.trade_id,
        total_fee=request.total_fee,
        token_id=response.token_id,
        pay_url=response.pay_url,
        appid=response.appid,
        created_at=now,
        expires_at=_expires_at(request, created_at=now, default_ttl=default_ttl),
    )


def response_mismatch(request: OrderRequest, response: OrderResponseData) -> str | None:
    """Why a verified unified-order answer is not about this request (it names another
    `mch_trade_id` or merchant), or None. Such an answer is not trusted; the next attempt gets
    107 and the query decides whose order it is."""
    if response.mch_trade_id is not None and response.mch_trade_id != request.mch_trade_id:
        return f"the answer names mch_trade_id {response.mch_trade_id}, not {request.mch_trade_id}"
    if response.merchant_id is not None and response.merchant_id != request.merchant_id:
        return f"the answer names merchant {response.merchant_id}, not {request.merchant_id}"
    return None


def check_repeat(stored: StoredOrder, request: OrderRequest) -> Conflict | None:
    """A request for a `mch_trade_id` this merchant already has an order for."""
    if stored.total_fee != request.total_fee:
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} already names order {stored.trade_id} "
                f"of {stored.total_fee} fen; this request asks for {request.total_fee} fen"
            ),
            trade_id=stored.trade_id,
        )
    return None


def recover_order(
    request: OrderRequest, existing: QueryData, *, now: float, default_ttl: float
) -> StoredOrder | Conflict:
    """After a 107: the queried order is ours when its merchant, mch_trade_id and amount match
    and it can still be paid or already was (paid, refund requested).

    An order that ended unpaid — closed (expired), failed, revoked, reversed — is a conflict:
    answering `created` would hand upstream a `pay_url` nobody can pay, and the platform keeps
    the `mch_trade_id` taken. Its `token_id` / `pay_url` / `appid` are taken from the query
    answer when it carries them (the sandbox does; the platform's documented query does not
    promise them).
    """
    if existing.merchant_id != request.merchant_id:
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} names an order of merchant "
                f"{existing.merchant_id or '(none given)'}, not {request.merchant_id}"
            ),
            trade_id=existing.trade_id,
        )
    if existing.mch_trade_id is not None and existing.mch_trade_id != request.mch_trade_id:
        return Conflict(
            msg=(
                f"the query for mch_trade_id {request.mch_trade_id} answered order "
                f"{existing.trade_id} of mch_trade_id {existing.mch_trade_id}"
            ),
            trade_id=existing.trade_id,
        )
    if existing.total_fee is None or existing.total_fee != request.total_fee:
        shown = "an unknown amount" if existing.total_fee is None else f"{existing.total_fee} fen"
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} already names order {existing.trade_id} "
                f"of {shown}; this request asks for {request.total_fee} fen"
            ),
            trade_id=existing.trade_id,
        )
    if existing.trade_state in _ENDED_UNPAID:
        state = existing.trade_state
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} already names order {existing.trade_id}, "
                f"which is {state.label} (trade_state {int(state)}) and can no longer be paid; "
                "send the order with a new mch_trade_id"
            ),
            trade_id=existing.trade_id,
        )
    extra = existing.model_extra or {}
    return StoredOrder(
        trade_id=existing.trade_id,
        total_fee=existing.total_fee,
        token_id=_str_or_none(extra.get("token_id")),
        pay_url=_str_or_none(extra.get("pay_url")),
        appid=_str_or_none(extra.get("appid")),
        created_at=now,
        expires_at=_expires_at(request, created_at=now, default_ttl=default_ttl),
    )


def _str_or_none(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and value != "" else None
