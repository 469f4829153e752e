"""Configuration: one `Settings` class, built once at the entry point and passed down.

Every field maps to the environment variable of the same name in upper case
(`kafka_bootstrap_servers` ← `KAFKA_BOOTSTRAP_SERVERS`). Those names are a public contract:
operators, `deploy/` and later components rely on them. Tests build `Settings(...)` directly
with keyword arguments.

    settings = load_settings()                  # from the environment, fails fast with the variable name
    settings = Settings(pooul_merchant_keys={"888": "k"}, kafka_bootstrap_servers="127.0.0.1:9092")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MerchantKeys", "Settings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    """Invalid configuration; the message names the environment variable to fix."""


class MerchantKeys:
    """Merchant MD5 keys, several per merchant during a rotation (newest first).

    Verification accepts any active key; signing uses the newest. Keys never appear in
    `repr`, `str` or logs.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, Iterable[str]] | None = None) -> None:
        self._keys: dict[str, tuple[str, ...]] = {
            str(merchant): tuple(values) for merchant, values in (keys or {}).items()
        }

    def __contains__(self, merchant_id: object) -> bool:
        return merchant_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"MerchantKeys(merchants={sorted(self._keys)!r}, keys=<redacted>)"

    __str__ = __repr__

    def merchants(self) -> list[str]:
        return sorted(self._keys)

    def verification_keys(self, merchant_id: str) -> tuple[str, ...]:
        """All active keys of a merchant; empty when the merchant is unknown."""
        return self._keys.get(merchant_id, ())

    def signing_key(self, merchant_id: str) -> str | None:
        """The newest key of a merchant, or None when the merchant is unknown."""
        keys = self._keys.get(merchant_id)
        return keys[0] if keys else None

    def as_json(self) -> str:
        """The `POOUL_MERCHANT_KEYS` value for child processes (the secret leaves on purpose)."""
        return orjson.dumps({m: list(k) for m, k in self._keys.items()}).decode()


def _parse_key_map(raw: Any, *, source: str) -> dict[str, list[str]]:
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, Mapping):
        raise ValueError(f'{source} must be a JSON object {{"<merchant_id>": "<key>" | [keys]}}')
    parsed: dict[str, list[str]] = {}
    for merchant, value in raw.items():
        keys = [value] if isinstance(value, str | SecretStr) else value
        if not isinstance(keys, list) or not keys:
            raise ValueError(f"{source}: merchant {merchant!r} needs a key or a non-empty list")
        plain = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        if not all(isinstance(k, str) and k for k in plain):
            raise ValueError(f"{source}: merchant {merchant!r} has an empty or non-string key")
        parsed[str(merchant)] = plain
    return parsed


class Settings(BaseSettings):
    """All settings of every pooul-worker process. See the README's configuration table."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", hide_input_in_errors=True, validate_default=True
    )

    # --- Kafka ---
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_client_id: str = "pooul-worker"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # Off by default: aiokafka's idempotent producer is rejected by the test broker (Tansu);
    # turn it on against Apache Kafka.
    kafka_enable_idempotence: bool = False
    kafka_linger_ms: int = Field(default=2, ge=0, le=1000)

    # --- Pooul platform ---
    pooul_base_url: str = "http://gateway.pooulcloud.cn"
    # Not a plain dict field: pydantic-settings would print the secret in a parse error.
    pooul_merchant_keys: SecretStr = SecretStr("")
    pooul_merchant_keys_file: Path | None = None
    pooul_notify_url: str | None = None
    pooul_connect_timeout: float = Field(default=3.0, gt=0)
    pooul_request_timeout: float = Field(default=10.0, gt=0)

    # --- Topics ---
    pooul_topic_order_requests: str = "pooul.order-requests.v1"
    pooul_topic_order_results: str = "pooul.order-results.v1"
    pooul_topic_trade_signals: str = "pooul.trade-signals.v1"
    pooul_topic_trade_state: str = "pooul.trade-state.v1"
    pooul_topic_order_state: str = "pooul.order-state.v1"
    pooul_topic_payment_events: str = "payments.events.v1"
    pooul_topic_dead_letters: str = "pooul.dead-letters.v1"
    pooul_topic_partitions: int = Field(default=8, ge=1)
    pooul_topic_replication_factor: int = Field(default=1, ge=1)

    # --- Logging ---
    pooul_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    pooul_log_format: Literal["json", "text"] = "json"

    # --- Ingress ---
    pooul_ingress_host: str = "0.0.0.0"
    pooul_ingress_port: int = Field(default=8080, ge=1, le=65535)

    # --- Stream runtime (orders and trades workers) ---

    # --- Trades worker ---

    # --- Orders worker ---

    # --- Sandbox ---

    _merchant_keys: MerchantKeys = MerchantKeys()

    @field_validator("pooul_base_url", "pooul_notify_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _load_merchant_keys(self) -> Settings:
        keys = _parse_key_map(
            self.pooul_merchant_keys.get_secret_value(), source="POOUL_MERCHANT_KEYS"
        )
        if self.pooul_merchant_keys_file is not None:
            path = self.pooul_merchant_keys_file
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"POOUL_MERCHANT_KEYS_FILE {path}: {exc.strerror}") from None
            keys.update(_parse_key_map(text, source="POOUL_MERCHANT_KEYS_FILE"))
        self._merchant_keys = MerchantKeys(keys)
        return self

    @property
    def merchant_keys(self) -> MerchantKeys:
        return self._merchant_keys

    def topics(self) -> dict[str, str]:
        """Logical name → topic name, for tooling that walks every topic."""
        return {
            "order_requests": self.pooul_topic_order_requests,
            "order_results": self.pooul_topic_order_results,
            "trade_signals": self.pooul_topic_trade_signals,
            "trade_state": self.pooul_topic_trade_state,
            "order_state": self.pooul_topic_order_state,
            "payment_events": self.pooul_topic_payment_events,
            "dead_letters": self.pooul_topic_dead_letters,
        }


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise `SettingsError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            name = str(loc[0]).upper() if loc else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
