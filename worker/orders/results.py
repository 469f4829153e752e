"""Building what the orders worker writes: order results and the order-created signal.

Pure: times come in as Unix seconds, records go out as `(value, headers)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from schemas.orders import (
    STATUS_HEADER,
    FieldError,
    OrderCreated,
    OrderFailed,
    OrderRejected,
    OrderRequest,
)
from schemas.signals import KIND_HEADER, MERCHANT_HEADER, REQUEST_ID_HEADER, OrderCreatedSignal
from worker.orders.requests import Invalid
from worker.orders.state import StoredOrder

__all__ = [
    "FailureReason",
    "Headers",
    "created_result",
    "created_signal",
    "encode_result",
    "encode_signal",
    "failed_result",
    "rejected_for",
    "rejected_result",
    "utc",
]

Headers = list[tuple[str, bytes]]
FailureReason = Literal["platform_refused", "conflict", "retries_exhausted"]
OrderResult = OrderCreated | OrderRejected | OrderFailed


def utc(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime (how results and signals carry times)."""
    return datetime.fromtimestamp(seconds, UTC)


def created_result(
    request: OrderRequest, order: StoredOrder, *, requested_at: float | None, now: float
) -> OrderCreated:
    """`created`: the same ids and `created_at` for every answer about this order."""
    return OrderCreated(
        merchant_id=request.merchant_id,
        mch_trade_id=request.mch_trade_id,
        total_fee=order.total_fee,
        request_id=request.request_id,
        requested_at=None if requested_at is None else utc(requested_at),
        answered_at=utc(now),
        trade_id=order.trade_id,
        token_id=order.token_id,
        pay_url=order.pay_url,
        appid=order.appid,
        created_at=utc(order.created_at),
        expires_at=utc(order.expires_at),
    )


def rejected_result(invalid: Invalid, *, requested_at: float | None, now: float) -> OrderRejected:
    """`rejected`: every contract violation, echoing what identifying fields the request had."""
    return OrderRejected(
        merchant_id=invalid.merchant_id,
        mch_trade_id=invalid.mch_trade_id,
        total_fee=invalid.total_fee,
        request_id=invalid.request_id,
        requested_at=None if requested_at is None else utc(requested_at),
        answered_at=utc(now),
        errors=list(invalid.errors),
    )


def rejected_for(
    request: OrderRequest, errors: Sequence[FieldError], *, requested_at: float | None, now: float
) -> OrderRejected:
    """`rejected` for a request that passed the model but not a later check (expiry)."""
    return rejected_result(
        Invalid(
            errors=tuple(errors),
            merchant_id=request.merchant_id,
            mch_trade_id=request.mch_trade_id,
            total_fee=request.total_fee,
            request_id=request.request_id,
        ),
        requested_at=requested_at,
        now=now,
    )


def failed_result(
    request: OrderRequest,
    *,
    reason: FailureReason,
    code: int | None,
    msg: str,
    retryable: bool,
    trade_id: str | None = None,
    requested_at: float | None,
    now: float,
) -> OrderFailed:
    """`failed`: the platform's refusal, a conflict, or retries given up on."""
    return OrderFailed(
        merchant_id=request.merchant_id,
        mch_trade_id=request.mch_trade_id,
        total_fee=request.total_fee,
        request_id=request.request_id,
        requested_at=None if requested_at is None else utc(requested_at),
        answered_at=utc(now),
        reason=reason,
        code=code,
        msg=msg,
        retryable=retryable,
        trade_id=trade_id,
    )


def encode_result(result: OrderResult) -> tuple[bytes, Headers]:
    """The record value and headers (`pooul-status`, merchant and request id when known)."""
    headers: Headers = [(STATUS_HEADER, result.status.encode())]
    if result.merchant_id is not None:
        headers.append((MERCHANT_HEADER, result.merchant_id.encode()))
    if result.request_id is not None:
        headers.append((REQUEST_ID_HEADER, result.request_id.encode()))
    return result.model_dump_json().encode(), headers


def created_signal(request: OrderRequest, order: StoredOrder) -> OrderCreatedSignal:
    """What the trades worker needs to check the amount and reconcile a silent trade."""
    return OrderCreatedSignal(
        trade_id=order.trade_id,
        merchant_id=request.merchant_id,
        mch_trade_id=request.mch_trade_id,
        total_fee=order.total_fee,
        expires_at=utc(order.expires_at),
        created_at=utc(order.created_at),
        request_id=request.request_id,
    )


def encode_signal(signal: OrderCreatedSignal) -> tuple[bytes, Headers]:
    """The record value and headers (`pooul-kind`, merchant and request id when known)."""
    headers: Headers = [
        (KIND_HEADER, signal.kind.encode()),
        (MERCHANT_HEADER, signal.merchant_id.encode()),
    ]
    if signal.request_id is not None:
        headers.append((REQUEST_ID_HEADER, signal.request_id.encode()))
    return signal.model_dump_json().encode(), headers
