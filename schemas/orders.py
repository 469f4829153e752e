"""Order requests in, order results out: the orders worker's public contract.

- `pooul.order-requests.v1`, key = `mch_trade_id`, value = JSON of `OrderRequest`.
- `pooul.order-results.v1`, key = `mch_trade_id`, value = JSON of `OrderCreated`,
  `OrderRejected` or `OrderFailed`, discriminated by `status`; `parse_order_result(bytes)`.

Headers: requests may carry `pooul-request-id` (used when the body has no `request_id`); results
carry `pooul-status`, `pooul-merchant-id` and `pooul-request-id` when known.

    request = OrderRequest.model_validate(payload, strict=True)   # upstream can check before sending
    result = parse_order_result(record.value)
    if result.status == "created":
        open_alipay(result.token_id, result.pay_url)
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "STATUS_HEADER",
    "SUPPORTED_PAY_TYPES",
    "FieldError",
    "OrderCreated",
    "OrderFailed",
    "OrderRejected",
    "OrderRequest",
    "OrderResult",
    "parse_order_result",
]

STATUS_HEADER: Final = "pooul-status"
SUPPORTED_PAY_TYPES: Final = ("alipay.jsapi",)

# The character set Chinese payment platforms accept in a merchant order number.
_MCH_TRADE_ID_PATTERN = r"^[A-Za-z0-9_\-|*@]+$"


def _supported_pay_type(value: Any) -> Any:
    if isinstance(value, str) and value not in SUPPORTED_PAY_TYPES:
        raise PydanticCustomError(
            "pay_type_unsupported",
            "pay_type '{pay_type}' is not supported; only 'alipay.jsapi' is",
            {"pay_type": value},
        )
    return value


def _text(*, max_length: int, pattern: str | None = None, description: str = "") -> Any:
    return Field(
        default=None, min_length=1, max_length=max_length, pattern=pattern, description=description
    )


class OrderRequest(BaseModel):
    """One order an upstream service wants created on Pooul (`alipay.jsapi`).

    Validate with `strict=True` as the worker does: `"12"` is not a `total_fee`.
    Either `buyer_id` or `buyer_logon_id` is required (a missing pair is reported on `buyer_id`).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"anyOf": [{"required": ["buyer_id"]}, {"required": ["buyer_logon_id"]}]},
    )

    merchant_id: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    mch_trade_id: str = Field(
        min_length=1,
        max_length=32,
        pattern=_MCH_TRADE_ID_PATTERN,
        description="unique per merchant forever; also the record key",
    )
    body: str = Field(min_length=1, max_length=128, description="goods description")
    total_fee: StrictInt = Field(gt=0, json_schema_extra={"unit": "fen"})
    spbill_create_ip: str = Field(min_length=1, max_length=64, description="buyer's IP address")
    buyer_id: str | None = _text(max_length=64, description="Alipay user id (2088…)")
    buyer_logon_id: str | None = _text(max_length=100, description="Alipay login (phone/email)")
    pay_type: Annotated[Literal["alipay.jsapi"], BeforeValidator(_supported_pay_type)] = (
        "alipay.jsapi"
    )
    notify_url: str | None = _text(
        max_length=255,
        pattern=r"^https?://\S+$",
        description="absolute http(s) URL; POOUL_NOTIFY_URL when absent",
    )
    attach: str | None = _text(max_length=128, description="returned as is in the notify")
    device_info: str | None = _text(max_length=32)
    goods_tag: str | None = _text(max_length=32)
    limit_pay: str | None = _text(max_length=32)
    time_expire: StrictInt | None = Field(
        default=None, ge=1_000_000_000, le=9_999_999_999, description="Unix seconds (10 digits)"
    )
    settle_type: Literal[0, 1] | None = Field(
        default=None, description="D0 settlement: 0 yes, 1 no"
    )
    request_id: str | None = _text(max_length=128, description="echoed in the result")

    @field_validator("spbill_create_ip")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise PydanticCustomError(
                "ip_address", "spbill_create_ip must be an IPv4 or IPv6 address"
            ) from None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _needs_buyer(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # A wrap validator, so a missing buyer is listed together with every other field error.
        missing = (
            isinstance(data, dict) and not data.get("buyer_id") and not data.get("buyer_logon_id")
        )
        error = InitErrorDetails(
            type=PydanticCustomError(
                "buyer_missing", "buyer_id or buyer_logon_id is required (at least one)"
            ),
            loc=("buyer_id",),
            input=None,
        )
        try:
            model = handler(data)
        except ValidationError as exc:
            if not missing:
                raise
            # Re-raised as custom errors: same type and message, whatever produced them.
            details = [
                InitErrorDetails(
                    type=PydanticCustomError(e["type"], e["msg"]), loc=e["loc"], input=e["input"]
                )
                for e in exc.errors()
                if e["loc"] != ("buyer_id",)
            ]
            raise ValidationError.from_exception_data(cls.__name__, [*details, error]) from None
        if missing:
            raise ValidationError.from_exception_data(cls.__name__, [error])
        return model


class FieldError(BaseModel):
    """One reason a request was rejected: `field` is the dotted location (`total_fee`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    message: str
    type: str = Field(description="machine-readable kind, e.g. `missing`, `greater_than`")


class _OrderResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    merchant_id: str | None
    mch_trade_id: str | None
    total_fee: int | None
    request_id: str | None = None
    requested_at: datetime | None = Field(
        default=None, description="timestamp of the request record"
    )
    answered_at: datetime = Field(description="when this result was produced")


class OrderCreated(_OrderResult):
    """The order exists on the platform: open Alipay with `token_id` / `pay_url`.

    Every answer for the same order carries the same ids and `created_at`.
    """

    status: Literal["created"] = "created"
    merchant_id: str
    mch_trade_id: str
    total_fee: int
    trade_id: str = Field(description="platform order id")
    token_id: str | None = None
    pay_url: str | None = None
    appid: str | None = None
    created_at: datetime = Field(description="when the worker first saw the order created")
    expires_at: datetime = Field(description="time_expire, else created_at + the default TTL")


class OrderRejected(_OrderResult):
    """The request broke the contract; no platform call was made. Fix it and send it again."""

    status: Literal["rejected"] = "rejected"
    errors: list[FieldError] = Field(min_length=1)


class OrderFailed(_OrderResult):
    """The platform refused the order, or it conflicts with an existing one.

    `reason`: `platform_refused` (the platform's `code`/`msg`), `conflict` (the `mch_trade_id`
    already names an order with another amount, merchant or terms — buyer, `body`, `attach`,
    ... — or one that ended unpaid: closed, failed, revoked, reversed), `retries_exhausted` (the
    platform kept answering a retryable error). `retryable` says whether sending the same request later
    makes sense.
    """

    status: Literal["failed"] = "failed"
    reason: Literal["platform_refused", "conflict", "retries_exhausted"]
    code: int | None = Field(description="the platform's code, when it answered one")
    msg: str
    retryable: bool
    trade_id: str | None = Field(default=None, description="the existing order, for a conflict")


OrderResult = Annotated[OrderCreated | OrderRejected | OrderFailed, Field(discriminator="status")]
_RESULT_ADAPTER: TypeAdapter[OrderCreated | OrderRejected | OrderFailed] = TypeAdapter(OrderResult)


def parse_order_result(value: bytes) -> OrderCreated | OrderRejected | OrderFailed:
    """Parse an order-results record value; raises `pydantic.ValidationError` on bad input."""
    return _RESULT_ADAPTER.validate_json(value)
