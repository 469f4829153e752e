"""The orders worker's judgements, as pure functions over what it knows.

- a repeat of an order already created: same order, or a conflict (another amount, buyer,
  description, ... — `ORDER_TERMS`); past the order's expiry, also a conflict when the
  platform says it ended unpaid;
- a 107 answered by the platform: the existing order (queried) is ours, or a conflict;
- a fresh success: the order to remember.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.orders import OrderRequest
from schemas.pooul import OrderResponseData, QueryData
from schemas.trade_state import TradeState
from worker.orders.state import StoredOrder

__all__ = [
    "ORDER_TERMS",
    "Conflict",
    "check_late_repeat",
    "check_repeat",
    "new_order",
    "order_terms",
    "recover_order",
    "response_mismatch",
]

# Besides the amount, what makes an order what it is: who pays, for what, on which terms, and
# what the merchant gets back in the notify. A repeat asking for other values of these is another
# order under a taken `mch_trade_id`. A repeat may differ in the rest: the buyer's address and
# device on this attempt (`spbill_create_ip`, `device_info`), `time_expire` (upstream may compute
# a deadline afresh; the answer carries the order's own `expires_at`), `notify_url` (resolved
# from configuration when absent) and `request_id`.
ORDER_TERMS = (
    "body",
    "buyer_id",
    "buyer_logon_id",
    "attach",
    "goods_tag",
    "limit_pay",
    "settle_type",
)

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


def order_terms(request: OrderRequest) -> dict[str, str | int | None]:
    """The request's `ORDER_TERMS`, as the state keeps them."""
    return {name: getattr(request, name) for name in ORDER_TERMS}


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
        terms=order_terms(request),
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
    """A request for a `mch_trade_id` this merchant already has an order for: a conflict when
    it asks for another amount or other `ORDER_TERMS` (named, their values not repeated: they
    may be personal). An entry kept before the terms were is judged on the amount alone."""
    if stored.total_fee != request.total_fee:
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} already names order {stored.trade_id} "
                f"of {stored.total_fee} fen; this request asks for {request.total_fee} fen"
            ),
            trade_id=stored.trade_id,
        )
    if stored.terms is None:
        return None
    asked = order_terms(request)
    # A term the entry does not name (kept by a release that knew fewer) is not judged.
    differ = [n for n in ORDER_TERMS if n in stored.terms and stored.terms[n] != asked[n]]
    if differ:
        return Conflict(
            msg=(
                f"mch_trade_id {request.mch_trade_id} already names order {stored.trade_id} "
                f"made with another {', '.join(differ)}; send the order with a new mch_trade_id"
            ),
            trade_id=stored.trade_id,
        )
    return None


def check_late_repeat(
    stored: StoredOrder, request: OrderRequest, existing: QueryData
) -> Conflict | None:
    """A repeat (same amount and terms) after the order's `expires_at`, judged on the platform's
    answer about it, like a 107 recovery: a conflict when it ended unpaid (closed, failed,
    revoked, reversed) — its `pay_url` can no longer be paid, and answering `created` would hand
    it upstream again. Paid, being paid, refund requested, or still waiting for a payment (our
    expiry may not be the platform's; the trades worker closes it) → the same order."""
    if existing.trade_id != stored.trade_id:
        return Conflict(
            msg=(
                f"the query for mch_trade_id {request.mch_trade_id} answered order "
                f"{existing.trade_id}, not the order {stored.trade_id} created for it"
            ),
            trade_id=existing.trade_id,
        )
    if existing.trade_state in _ENDED_UNPAID:
        return _unpayable(request, existing.trade_id, existing.trade_state)
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
    promise them). The query does not tell the rest of the order's terms: the recovered order
    keeps this request's.
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
        return _unpayable(request, existing.trade_id, existing.trade_state)
    extra = existing.model_extra or {}
    return StoredOrder(
        trade_id=existing.trade_id,
        total_fee=existing.total_fee,
        token_id=_str_or_none(extra.get("token_id")),
        pay_url=_str_or_none(extra.get("pay_url")),
        appid=_str_or_none(extra.get("appid")),
        created_at=now,
        expires_at=_expires_at(request, created_at=now, default_ttl=default_ttl),
        terms=order_terms(request),
    )


def _unpayable(request: OrderRequest, trade_id: str, state: TradeState) -> Conflict:
    return Conflict(
        msg=(
            f"mch_trade_id {request.mch_trade_id} already names order {trade_id}, which is "
            f"{state.label} (trade_state {int(state)}) and can no longer be paid; send the order "
            "with a new mch_trade_id"
        ),
        trade_id=trade_id,
    )


def _str_or_none(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and value != "" else None
