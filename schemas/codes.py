"""The platform's `code` values: the communication result, not the trade result."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ResultCode"]


class ResultCode(IntEnum):
    """`code` in every response envelope; `retryable` says whether the same call may succeed later."""

    OK = 0
    JSON_PARSE_ERROR = 100
    BAD_SIGNATURE = 101
    MISSING_FIELD = 103
    DUPLICATE_ORDER = 107
    OUTSIDE_SERVICE_HOURS = 108
    CHANNEL_MISCONFIGURED = 1500
    UNKNOWN_MERCHANT = 200
    MERCHANT_DISABLED = 201
    PAY_TYPE_NOT_ENABLED = 202
    ORDER_NOT_FOUND = 301
    CHANNEL_ERROR = 600
    CHANNEL_TIMEOUT = 601

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {ResultCode.OUTSIDE_SERVICE_HOURS, ResultCode.CHANNEL_ERROR, ResultCode.CHANNEL_TIMEOUT}
)
