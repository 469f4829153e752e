"""Fault injection: what to break, for whom, and the random draws that decide each call.

    faults.set(FaultConfig(error_500_rate=0.2))                       # every merchant
    faults.set(FaultConfig(merchant_id="888", latency_ms=[50, 200]))  # that merchant only
    faults.set(FaultConfig(force_code=202, force_code_endpoints=("pay",)))  # refuse every pay
    config = faults.for_merchant("888")                               # the config in force

A merchant's own config replaces the global one for that merchant (no field-by-field merge), so
what `GET /sandbox/faults` shows for a merchant is exactly what applies to it.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

__all__ = ["GATEWAY_ENDPOINTS", "Endpoint", "FaultConfig", "Faults"]

Endpoint = Literal["pay", "query", "order_close"]
GATEWAY_ENDPOINTS: tuple[Endpoint, ...] = ("pay", "query", "order_close")

_Rate = Field(default=0.0, ge=0.0, le=1.0)


class FaultConfig(BaseModel):
    """One scope's faults (`merchant_id` None = global); every field defaults to "no fault"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    merchant_id: str | None = None
    latency_ms: float | tuple[float, float] = 0.0
    error_500_rate: float = _Rate
    # The status those answers carry: a 4xx plays a proxy or firewall refusing the call.
    error_500_status: StrictInt = Field(default=500, ge=400, le=599)
    code_601_rate: float = _Rate
    bad_signature_rate: float = _Rate
    create_then_timeout_rate: float = _Rate
    hang_seconds: float = Field(default=30.0, ge=0.0)
    notify_duplicates: int = Field(default=0, ge=0, le=100)
    notify_loss_rate: float = _Rate
    forge_notify_rate: float = _Rate
    # Off: query answers leave out token_id/pay_url/appid, as the platform's documented query.
    query_pay_link: bool = True
    # On: notifies and query answers carry `total_fee` as a string and a field the docs do not
    # list, as the platform may (catches a merchant verifying over a re-serialised model).
    loose_types: bool = False
    # Any platform code, documented or not, answered instead of the call's effect: the codes a
    # well-formed request cannot provoke (201 merchant disabled, 1500, 108...) become testable.
    force_code: StrictInt | None = Field(default=None, gt=0)
    force_code_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    force_code_endpoints: tuple[Endpoint, ...] = Field(default=GATEWAY_ENDPOINTS, min_length=1)

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        low, high = value if isinstance(value, tuple) else (value, value)
        if low < 0 or high < low:
            raise ValueError("latency_ms is a number >= 0 or [min, max] with 0 <= min <= max")
        return value


class Faults:
    """The fault configs in force and the seeded draws made against them.

    Draws only consume randomness when the rate is strictly between 0 and 1, so a seeded run
    is reproducible and switching a fault off does not shift unrelated draws.
    """

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._global = FaultConfig()
        self._merchants: dict[str, FaultConfig] = {}

    def set(self, config: FaultConfig) -> None:
        """Replace the config of `config.merchant_id`'s scope (None = global)."""
        if config.merchant_id is None:
            self._global = config
        else:
            self._merchants[config.merchant_id] = config

    def reset(self, merchant_id: str | None = None) -> None:
        """Back to no faults: everything, or only one merchant's own config."""
        if merchant_id is None:
            self._global = FaultConfig()
            self._merchants.clear()
        else:
            self._merchants.pop(merchant_id, None)

    def for_merchant(self, merchant_id: str | None) -> FaultConfig:
        """The config in force for a merchant: its own, else the global one."""
        if merchant_id is not None and merchant_id in self._merchants:
            return self._merchants[merchant_id]
        return self._global

    def snapshot(self) -> dict[str, object]:
        """Every scope's config, as `GET /sandbox/faults` shows it."""
        return {
            "global": self._global.model_dump(mode="json"),
            "merchants": {m: c.model_dump(mode="json") for m, c in self._merchants.items()},
        }

    def hit(self, rate: float) -> bool:
        """True with probability `rate`."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._rng.random() < rate

    def latency_seconds(self, config: FaultConfig) -> float:
        """The added latency for one call: fixed, or uniform in [min, max]."""
        if isinstance(config.latency_ms, tuple):
            low, high = config.latency_ms
            return (low if low == high else self._rng.uniform(low, high)) / 1000.0
        return config.latency_ms / 1000.0
