"""Errors of the Pooul client. `retryable` is a property of the type, never of string matching.

PooulError
├── MerchantKeyMissing              no key configured for the merchant (permanent)
├── TransportError                  connection failed, HTTP 5xx/408/429/other non-200, unparseable
│   │                               body (retryable: an outage)
│   └── PooulTimeout                connect or total timeout (retryable)
├── RequestRefused                  HTTP 4xx (not 408/429): this request was refused on the way
│                                   (retryable, but not an outage: callers bound its retries)
├── ResponseSignatureError          response `data` did not verify: never used (retryable)
├── MalformedResponse               verified `data` without the promised shape (retryable, but
│                                   not an outage: callers bound its retries)
└── PlatformError(code, msg, data)  the platform answered code != 0
    ├── RetryablePlatformError      108 outside service hours, 600 channel error, 601 channel timeout
    ├── PermanentPlatformError      100, 101, 103, 200, 201, 202, 1500 and unknown codes
    ├── DuplicateOrder              107: an earlier attempt with this mch_trade_id reached the platform
    └── OrderNotFound               301
"""

from __future__ import annotations

from typing import Any, ClassVar

from schemas.codes import ResultCode

__all__ = [
    "DuplicateOrder",
    "MalformedResponse",
    "MerchantKeyMissing",
    "OrderNotFound",
    "PermanentPlatformError",
    "PlatformError",
    "PooulError",
    "PooulTimeout",
    "RequestRefused",
    "ResponseSignatureError",
    "RetryablePlatformError",
    "TransportError",
    "platform_error",
]


class PooulError(Exception):
    """Root of every client error; `retryable` says whether the same call may succeed later."""

    retryable: ClassVar[bool] = False


class MerchantKeyMissing(PooulError):
    """No MD5 key is configured for the merchant (POOUL_MERCHANT_KEYS)."""


class TransportError(PooulError):
    """The call did not produce a usable answer: connection failure, HTTP 5xx, garbage body."""

    retryable = True


class PooulTimeout(TransportError):
    """No answer within the connect or total timeout. The platform may still have acted."""


class RequestRefused(PooulError):
    """An HTTP 4xx other than 408/429: a proxy, a firewall or the gateway refused this request
    (its size or content, say). Not a `TransportError`: other requests may pass, so waiting
    behind the circuit breaker until this one does would hold its partition forever; callers
    retry a bounded number of times, then answer `failed` or dead-letter."""

    retryable = True

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class MalformedResponse(PooulError):
    """A verified answer whose `data` does not have the shape the call promises (no trade_id, a
    trade_state outside the documented ones). Not a `TransportError`: the platform is up and
    signing, so retrying until it changes its answer would hold a partition forever; callers
    retry a bounded number of times, then dead-letter or answer `failed`."""

    retryable = True


class ResponseSignatureError(PooulError):
    """The response's `data` signature did not verify; its content must not be trusted."""

    retryable = True


class PlatformError(PooulError):
    """The platform answered with `code != 0`."""

    def __init__(self, code: int, msg: str | None, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"pooul code {code}: {msg or 'no message'}")
        self.code = code
        self.msg = msg
        self.data = data


class RetryablePlatformError(PlatformError):
    retryable = True


class PermanentPlatformError(PlatformError):
    pass


class DuplicateOrder(PlatformError):
    """Code 107: recover the existing order by query, never retry with a new mch_trade_id."""


class OrderNotFound(PlatformError):
    """Code 301."""


def platform_error(code: int, msg: str | None, data: dict[str, Any] | None = None) -> PlatformError:
    """The typed error for a non-zero `code`; unknown codes are permanent (no retry storms)."""
    if code == ResultCode.DUPLICATE_ORDER:
        return DuplicateOrder(code, msg, data)
    if code == ResultCode.ORDER_NOT_FOUND:
        return OrderNotFound(code, msg, data)
    if code in ResultCode.__members__.values() and ResultCode(code).retryable:
        return RetryablePlatformError(code, msg, data)
    return PermanentPlatformError(code, msg, data)
