"""`trade_state` values of the `alipay.jsapi` chapter, plus -1 (initial) from another chapter."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["TradeState"]


class TradeState(IntEnum):
    """The platform's trade state; `is_final` says whether it can still change by payment."""

    INITIAL = -1
    PAID = 0
    REFUND_REQUESTED = 1
    NOT_PAID = 2
    CLOSED = 3
    REVERSED = 4
    REVOKED = 5
    PAYING = 6
    FAILED = 7

    @property
    def is_final(self) -> bool:
        return self not in _NOT_FINAL

    @property
    def label(self) -> str:
        """Lower-case name used in events and logs (`paid`, `refund_requested`, ...)."""
        return self.name.lower()


_NOT_FINAL = frozenset({TradeState.INITIAL, TradeState.NOT_PAID, TradeState.PAYING})
