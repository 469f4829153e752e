"""Message contracts of pooul-worker: everything that crosses a process or network boundary."""

from schemas.codes import ResultCode
from schemas.money import Fen, YuanAsFen, fen_from_yuan, parse_fen
from schemas.pooul import (
    CloseRequest,
    FundBill,
    NotifyData,
    OrderResponseData,
    QueryData,
    QueryRequest,
    ResponseEnvelope,
    UnifiedOrderRequest,
    parse_fund_bills,
    parse_platform_time,
)
from schemas.signals import (
    KIND_HEADER,
    MERCHANT_HEADER,
    REQUEST_ID_HEADER,
    NotifySignal,
    OrderCreatedSignal,
    RecheckSignal,
    ResolveSignal,
    TradeSignal,
    parse_trade_signal,
)
from schemas.trade_state import TradeState

__all__ = [
    "KIND_HEADER",
    "MERCHANT_HEADER",
    "REQUEST_ID_HEADER",
    "CloseRequest",
    "Fen",
    "FundBill",
    "NotifyData",
    "NotifySignal",
    "OrderCreatedSignal",
    "OrderResponseData",
    "QueryData",
    "QueryRequest",
    "RecheckSignal",
    "ResolveSignal",
    "ResponseEnvelope",
    "ResultCode",
    "TradeSignal",
    "TradeState",
    "UnifiedOrderRequest",
    "YuanAsFen",
    "fen_from_yuan",
    "parse_fen",
    "parse_fund_bills",
    "parse_platform_time",
    "parse_trade_signal",
]
