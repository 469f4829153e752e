"""Order request in → a valid `OrderRequest` (or every reason it is not) → `UnifiedOrderRequest`.

Pure functions, no I/O: the handler decides what to do with the outcome.

    payload = decode_payload(record.value)            # raises Unparseable → dead letter
    outcome = validate_request(payload, key=record.key, header_request_id=..., ...)
    if isinstance(outcome, Invalid): answer rejected(outcome.errors)
    else: client.create_order(to_unified_order(outcome))
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.orders import FieldError, OrderRequest
from schemas.pooul import UnifiedOrderRequest

__all__ = [
    "Invalid",
    "Unparseable",
    "decode_payload",
    "expiry_error",
    "field_errors",
    "to_unified_order",
    "validate_request",
]

_MAX_REQUEST_ID = 128


class Unparseable(ValueError):
    """The record value is not a JSON object: nothing to answer, it goes to the dead letters."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A request that broke the contract, with whatever identifying fields it did carry."""

    errors: tuple[FieldError, ...]
    merchant_id: str | None
    mch_trade_id: str | None
    total_fee: int | None
    request_id: str | None


def decode_payload(value: bytes | None) -> dict[str, Any]:
    """The record value as a JSON object; `Unparseable` says why it is not one."""
    if value is None:
        raise Unparseable("empty record value (tombstone)")
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Unparseable(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise Unparseable(f"a JSON {type(payload).__name__}, not an object")
    return payload


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as `FieldError`s: dotted location, message, type."""
    return [
        FieldError(
            field=".".join(str(part) for part in error["loc"]) or "(request)",
            message=error["msg"],
            type=error["type"],
        )
        for error in exc.errors(include_url=False)
    ]


def validate_request(
    payload: dict[str, Any],
    *,
    key: bytes | None,
    header_request_id: bytes | None,
    known_merchants: Container[str],
    default_notify_url: str | None,
) -> OrderRequest | Invalid:
    """Validate strictly; on success `notify_url` and `request_id` are filled in.

    Beyond the model: the record key must be the `mch_trade_id` (the worker's state and the
    result are keyed by it), the merchant must have a configured key, and a notify URL must come
    from the request or from `POOUL_NOTIFY_URL`. Every problem is listed, not just the first.
    """
    if payload.get("request_id") is None:
        from_header = _header_request_id(header_request_id)
        if from_header is not None:
            payload = {**payload, "request_id": from_header}
    errors: list[FieldError] = []
    request: OrderRequest | None = None
    try:
        request = OrderRequest.model_validate(payload, strict=True)
    except ValidationError as exc:
        errors.extend(field_errors(exc))
    failed_fields = {error.field for error in errors}

    mch_trade_id = payload.get("mch_trade_id")
    if (
        "mch_trade_id" not in failed_fields
        and isinstance(mch_trade_id, str)
        and (key is None or key != mch_trade_id.encode())
    ):
        shown = "none" if key is None else repr(key.decode(errors="replace"))
        errors.append(
            FieldError(
                field="mch_trade_id",
                message=f"the record key must equal mch_trade_id (key is {shown})",
                type="key_mismatch",
            )
        )
    merchant_id = payload.get("merchant_id")
    if (
        "merchant_id" not in failed_fields
        and isinstance(merchant_id, str)
        and merchant_id not in known_merchants
    ):
        errors.append(
            FieldError(
                field="merchant_id",
                message=f"merchant {merchant_id!r} is not configured here (no key in POOUL_MERCHANT_KEYS)",
                type="merchant_unknown",
            )
        )
    if payload.get("notify_url") is None and default_notify_url is None:
        errors.append(
            FieldError(
                field="notify_url",
                message="notify_url is required: the request has none and POOUL_NOTIFY_URL is not set",
                type="missing",
            )
        )

    if errors or request is None:
        return Invalid(
            errors=tuple(errors),
            merchant_id=merchant_id if isinstance(merchant_id, str) else None,
            mch_trade_id=mch_trade_id if isinstance(mch_trade_id, str) else None,
            total_fee=_int_or_none(payload.get("total_fee")),
            request_id=_str_or_none(payload.get("request_id")),
        )
    if request.notify_url is None:
        request = request.model_copy(update={"notify_url": default_notify_url})
    return request


def expiry_error(request: OrderRequest, *, now: float) -> FieldError | None:
    """A new order whose `time_expire` has already passed makes no sense to create."""
    if request.time_expire is not None and request.time_expire <= now:
        return FieldError(
            field="time_expire",
            message=f"time_expire {request.time_expire} is in the past (now {int(now)})",
            type="expired",
        )
    return None


def to_unified_order(request: OrderRequest) -> UnifiedOrderRequest:
    """The platform request; `notify_url` must already be resolved by `validate_request`."""
    if request.notify_url is None:
        raise ValueError("notify_url is not resolved")
    return UnifiedOrderRequest(
        pay_type=request.pay_type,
        merchant_id=request.merchant_id,
        mch_trade_id=request.mch_trade_id,
        body=request.body,
        total_fee=request.total_fee,
        spbill_create_ip=request.spbill_create_ip,
        notify_url=request.notify_url,
        buyer_id=request.buyer_id,
        buyer_logon_id=request.buyer_logon_id,
        attach=request.attach,
        device_info=request.device_info,
        goods_tag=request.goods_tag,
        limit_pay=request.limit_pay,
        time_expire=request.time_expire,
        settle_type=request.settle_type,
    )


def _header_request_id(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    return text if len(text) <= _MAX_REQUEST_ID else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
