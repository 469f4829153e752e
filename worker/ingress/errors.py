"""Why a notify did not get `success`.

```
IngressError                    root; `status` is the HTTP answer, the body is always `fail`
├── NotifyRejected(reason)      the notify itself is bad: 4xx, nothing produced (permanent)
└── PublishError                the broker did not take the record: 503, the platform retries
    └── PublishTimeout          no acks=all acknowledgement within POOUL_INGRESS_ACK_TIMEOUT
```
`retryable` says whether the platform's retry can succeed; `reason` is the metrics label and the
log field, never a secret.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "IngressError",
    "NotifyRejected",
    "PublishError",
    "PublishTimeout",
    "Reason",
]


class Reason(StrEnum):
    """Every rejection reason with its HTTP status (documented in docs/ingress.md)."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    ENVELOPE_CODE = "envelope_code"
    MISSING_DATA = "missing_data"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    UNKNOWN_MERCHANT = "unknown_merchant"
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    BODY_TOO_LARGE = "body_too_large"
    READ_TIMEOUT = "read_timeout"
    CLIENT_GONE = "client_gone"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS: dict[Reason, int] = {
    Reason.MALFORMED_JSON: 400,
    Reason.NOT_AN_OBJECT: 400,
    Reason.ENVELOPE_CODE: 400,
    Reason.MISSING_DATA: 400,
    Reason.MISSING_FIELD: 400,
    Reason.BAD_FIELD: 400,
    Reason.UNKNOWN_MERCHANT: 404,
    Reason.MISSING_SIGNATURE: 403,
    Reason.BAD_SIGNATURE: 403,
    Reason.BODY_TOO_LARGE: 413,
    Reason.READ_TIMEOUT: 408,
    # The connection closed before the body was complete: nothing can be answered; 499 (the
    # "client closed request" of common proxies) is what the log line and the metric say.
    Reason.CLIENT_GONE: 499,
}


class IngressError(Exception):
    """Root of the ingress errors."""

    retryable: bool = False
    status: int = 500
    reason: str = "error"


class NotifyRejected(IngressError):
    """The notify is malformed, unsigned, forged or too big: refused, never enqueued.

    `merchant_id` and `trade_id` are the claimed (unverified) values when they could be read,
    for the log line only.
    """

    retryable = False

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        merchant_id: str | None = None,
        trade_id: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = str(reason)
        self.status = reason.status
        self.detail = detail
        self.merchant_id = merchant_id
        self.trade_id = trade_id


class PublishError(IngressError):
    """The broker failed the write (or is unreachable): answer 503 so the platform retries."""

    retryable = True
    status = 503
    reason = "broker_error"


class PublishTimeout(PublishError):
    """The acknowledgement did not come back within the deadline."""

    reason = "broker_timeout"
