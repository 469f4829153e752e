"""Messages exchanged with the Pooul gateway (`alipay.jsapi`).

Strict on what we send (`extra="forbid"`, exact types); lenient on what we receive
(`extra="allow"` keeps unknown fields, amounts parse from `12`, `"12"` or yuan strings).
Signatures are never checked against these models: verify the raw `data` object first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.money import Fen, LenientFen, LenientYuanAsFen, ascii_digits, fen_from_yuan
from schemas.trade_state import TradeState

__all__ = [
    "CloseRequest",
    "FundBill",
    "NotifyData",
    "OrderResponseData",
    "QueryData",
    "QueryRequest",
    "ResponseEnvelope",
    "UnifiedOrderRequest",
    "parse_fund_bills",
    "parse_platform_time",
]

PAY_TYPE_ALIPAY_JSAPI: Final = "alipay.jsapi"
_CHINA = timezone(timedelta(hours=8))


def _trade_state(value: Any) -> Any:
    """`0` or `"0"`; never a boolean (pydantic would take `false` for 0, paid)."""
    if isinstance(value, bool):
        raise ValueError("trade_state must be an integer, not a boolean")
    if isinstance(value, str) and value.isascii() and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


LenientTradeState = Annotated[TradeState, BeforeValidator(_trade_state)]
Text = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]


class _Outgoing(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def to_fields(self) -> dict[str, Any]:
        """The fields to sign and send: unset optionals left out."""
        return self.model_dump(exclude_none=True)


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class UnifiedOrderRequest(_Outgoing):
    """Unified order (统一下单) for `alipay.jsapi`, before signing (`sign` is added by the client)."""

    pay_type: Literal["alipay.jsapi"] = PAY_TYPE_ALIPAY_JSAPI
    merchant_id: str = Field(min_length=1, max_length=32)
    mch_trade_id: str = Field(min_length=1, max_length=32)
    body: str = Field(min_length=1, max_length=128)
    total_fee: int = Field(gt=0)
    spbill_create_ip: str = Field(min_length=1, max_length=64)
    notify_url: str = Field(min_length=1, max_length=255, pattern=r"^https?://")
    buyer_id: str | None = None
    buyer_logon_id: str | None = None
    version: str | None = "1.0"
    sign_type: str | None = "MD5"
    device_info: str | None = None
    attach: str | None = Field(default=None, max_length=128)
    limit_pay: str | None = None
    time_start: int | None = Field(default=None, ge=1_000_000_000, le=9_999_999_999)
    time_expire: int | None = Field(default=None, ge=1_000_000_000, le=9_999_999_999)
    op_user_id: str | None = None
    goods_tag: str | None = None
    product_id: str | None = None
    nonce_str: str | None = Field(default=None, max_length=32)
    settle_type: Literal[0, 1] | None = None

    @model_validator(mode="after")
    def _needs_buyer(self) -> UnifiedOrderRequest:
        if not self.buyer_id and not self.buyer_logon_id:
            raise ValueError("buyer_id or buyer_logon_id is required")
        return self


class QueryRequest(_Outgoing):
    """Order query (订单查询); `trade_id` wins when both ids are given."""

    merchant_id: str = Field(min_length=1)
    trade_id: str | None = None
    mch_trade_id: str | None = Field(default=None, max_length=32)
    nonce_str: str | None = Field(default=None, max_length=32)
    version: str | None = "1.0"
    sign_type: str | None = "MD5"

    @model_validator(mode="after")
    def _needs_an_id(self) -> QueryRequest:
        if not self.trade_id and not self.mch_trade_id:
            raise ValueError("trade_id or mch_trade_id is required")
        return self


class CloseRequest(QueryRequest):
    """Close order: same identification as a query."""


class ResponseEnvelope(_Incoming):
    """Response and notify envelope. `code` is the call's result; the trade's is in `data`."""

    code: int
    msg: str | None = None
    data: dict[str, Any] | None = None
    version: str | None = None
    sign_type: str | None = None
    sign: str | None = None


class OrderResponseData(_Incoming):
    """`data` of a successful unified order; some examples say `transaction_id` for `trade_id`."""

    trade_id: Text
    mch_trade_id: Text | None = None
    merchant_id: Text | None = None
    token_id: str | None = None
    pay_url: str | None = None
    appid: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _transaction_id_alias(cls, value: Any) -> Any:
        if isinstance(value, dict) and "trade_id" not in value and "transaction_id" in value:
            return {**value, "trade_id": value["transaction_id"]}
        return value


class NotifyData(_Incoming):
    """`data` of an asynchronous notification. A hint, never proof: confirm by query."""

    merchant_id: Text
    trade_id: Text
    mch_trade_id: Text
    trade_state: LenientTradeState
    out_trade_id: Text | None = None
    ch_trade_id: Text | None = None
    pay_type: str | None = None
    total_fee: Fen | None = None
    fee_type: str | None = None
    currency_type: str | None = None
    time_end: Text | None = None
    nonce_str: str | None = None
    attach: str | None = None
    openid: str | None = None
    buyer_logon_id: str | None = None
    buyer_user_id: str | None = None
    fund_bill_list: str | None = None
    bank_type: str | None = None

    @property
    def currency(self) -> str:
        return self.fee_type or self.currency_type or "CNY"


class QueryData(NotifyData):
    """`data` of an order query: the source of truth for a trade's state."""

    mch_trade_id: Text | None = None  # type: ignore[assignment]
    coupon_fee: LenientFen = None
    bank_billno: str | None = None
    buyer_pay_amount: LenientYuanAsFen = None
    invoice_amount: LenientYuanAsFen = None
    point_amount: LenientYuanAsFen = None
    receipt_amount: LenientYuanAsFen = None


class FundBill(BaseModel):
    """One funding source of a payment, amount in fen."""

    model_config = ConfigDict(extra="allow", frozen=True)

    fund_channel: str
    amount: int


def parse_fund_bills(raw: str | None) -> list[FundBill]:
    """`fund_bill_list` is a JSON *string* of `[{"fund_channel": .., "amount": "0.12"}]`."""
    if not raw:
        return []
    items = orjson.loads(raw)
    if not isinstance(items, list):
        raise ValueError("fund_bill_list is not a JSON list")
    bills = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("fund_bill_list item is not an object")
        channel = item.get("fund_channel", item.get("fundChannel"))
        rest = {k: v for k, v in item.items() if k not in ("fund_channel", "fundChannel", "amount")}
        bills.append(
            FundBill(fund_channel=str(channel), amount=fen_from_yuan(item.get("amount")), **rest)
        )
    return bills


def parse_platform_time(value: str | int | None) -> datetime | None:
    """A platform timestamp as aware UTC: Unix seconds, `yyyyMMddHHmmss` or `yyyy-MM-dd HH:mm:ss`
    (China time, as the platform uses), or ISO 8601."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if ascii_digits(text) and len(text) == 10:
        return datetime.fromtimestamp(int(text), UTC)
    for fmt in ("%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=_CHINA).astimezone(UTC)
        except ValueError:
            pass
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=_CHINA)).astimezone(UTC)
