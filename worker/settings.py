"""Configuration: one `Settings` class, built once at the entry point and passed down.

Every field maps to the environment variable of the same name in upper case
(`kafka_bootstrap_servers` ← `KAFKA_BOOTSTRAP_SERVERS`). Those names are a public contract:
operators, `deploy/` and later components rely on them. Tests build `Settings(...)` directly
with keyword arguments.

    settings = load_settings()                  # from the environment, fails fast with the variable name
    settings = Settings(pooul_merchant_keys='{"888": "k"}', kafka_bootstrap_servers="127.0.0.1:9092")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MerchantKeys", "Settings", "SettingsError", "load_settings"]


# A notify_url the platform can call: scheme, a host, no whitespace.
_NOTIFY_URL = re.compile(r"https?://[^\s/?#]+\S*")


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
    # Comma-separated host:port list of the Kafka cluster.
    kafka_bootstrap_servers: str = "localhost:9092"
    # Client id the brokers see (quotas, logs).
    kafka_client_id: str = "pooul-worker"
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (SSL uses the system's CA bundle).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # SASL mechanism and credentials, for the SASL_* protocols (the password is a secret).
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # Off by default: aiokafka's idempotent producer is rejected by the test broker (Tansu);
    # turn it on against Apache Kafka.
    kafka_enable_idempotence: bool = False
    # Milliseconds a producer waits to batch records (latency vs. throughput).
    kafka_linger_ms: int = Field(default=2, ge=0, le=1000)

    # --- Pooul platform ---
    # Gateway root: production, the test host (gateway-test.pooulcloud.cn) or a sandbox.
    pooul_base_url: str = "http://gateway.pooulcloud.cn"
    # JSON {"<merchant_id>": "<md5 key>" | ["<newest>", "<older>"]}: several merchants, several
    # active keys during a rotation (verify with any, sign with the first). A secret.
    # (A SecretStr, not a dict field: pydantic-settings would print the secret in a parse error.)
    pooul_merchant_keys: SecretStr = SecretStr("")
    # Path to a file with the same JSON (a mounted Secret); merged over POOUL_MERCHANT_KEYS.
    pooul_merchant_keys_file: Path | None = None
    # Public URL of our ingress's /pooul/notify, sent as `notify_url` in unified orders.
    pooul_notify_url: str | None = None
    # Seconds to connect to the gateway, and for a whole call; a timeout is retryable.
    pooul_connect_timeout: float = Field(default=3.0, gt=0)
    pooul_request_timeout: float = Field(default=10.0, gt=0)
    # Most HTTP connections one process opens to the gateway at once; further calls wait for a
    # free one. Bounds a worker's call rate at about this many / the gateway's latency, so keep
    # it near POOUL_MAX_IN_FLIGHT.
    pooul_http_connections: int = Field(default=1000, ge=1, le=10_000)

    # --- Topics ---
    # Topic names (see the README's topic table); changelogs are compacted.
    pooul_topic_order_requests: str = "pooul.order-requests.v1"
    pooul_topic_order_results: str = "pooul.order-results.v1"
    pooul_topic_trade_signals: str = "pooul.trade-signals.v1"
    pooul_topic_trade_state: str = "pooul.trade-state.v1"
    pooul_topic_order_state: str = "pooul.order-state.v1"
    pooul_topic_payment_events: str = "payments.events.v1"
    pooul_topic_dead_letters: str = "pooul.dead-letters.v1"
    # Partitions and replicas `topics create` uses; caps each worker group's parallelism.
    pooul_topic_partitions: int = Field(default=8, ge=1)
    pooul_topic_replication_factor: int = Field(default=1, ge=1)

    # --- Logging ---
    # Log level, and `json` (one object per line) or `text`.
    pooul_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    pooul_log_format: Literal["json", "text"] = "json"

    # --- Ingress ---
    # Interface and port `pooul-worker ingress` listens on (the CLI's --host/--port win).
    pooul_ingress_host: str = "0.0.0.0"
    pooul_ingress_port: int = Field(default=8080, ge=1, le=65535)
    # Largest notify body accepted; a bigger one gets 413 and is never buffered past the cap.
    pooul_ingress_max_body_bytes: int = Field(default=65536, ge=1024, le=262144)
    # Seconds to receive a whole notify body; a stalled sender gets 408.
    pooul_ingress_read_timeout: float = Field(default=1.0, gt=0, le=4.0)
    # Seconds to wait for the acks=all acknowledgement before answering 503 `fail`;
    # read + ack timeouts must stay under the platform's 5 s (the CLI refuses otherwise).
    pooul_ingress_ack_timeout: float = Field(default=3.0, gt=0, le=4.5)
    # Seconds in-flight notifies get to finish after SIGTERM/SIGINT before they are cancelled.
    pooul_ingress_shutdown_grace: float = Field(default=10.0, ge=0)
    # Seconds between the broker probes behind /readyz (metadata + leader connection).
    pooul_ingress_ready_interval: float = Field(default=2.0, gt=0)

    # --- Stream runtime (orders and trades workers) ---
    # Records (and timer firings) one worker processes or holds at once; at the limit fetching
    # pauses until a quarter of the budget is free again (backpressure, bounded memory).
    pooul_max_in_flight: int = Field(default=1000, ge=1, le=100_000)
    # Seconds between offset commits (also committed on revocation and shutdown).
    pooul_commit_interval: float = Field(default=1.0, gt=0)
    # Handler attempts per record (first try included) before it is dead-lettered;
    # RemoteUnavailable attempts do not count.
    pooul_max_attempts: int = Field(default=5, ge=1)
    # Retry backoff: base * 2^(attempt-1) seconds, capped at the max, half of it random jitter.
    pooul_retry_backoff_base: float = Field(default=0.5, gt=0)
    pooul_retry_backoff_max: float = Field(default=30.0, gt=0)
    # Seconds without progress on a partition that has pending records (or one handler call
    # running that long) before /healthz reports the worker dead.
    pooul_stall_timeout: float = Field(default=120.0, gt=0)
    # Seconds in-flight work gets to finish on SIGTERM/stop before it is cancelled (uncommitted).
    pooul_shutdown_grace: float = Field(default=10.0, ge=0)
    # Seconds running handler calls of a revoked partition get before they are cancelled.
    pooul_revoke_grace: float = Field(default=5.0, ge=0)
    # Static group membership (KIP-345): a stable id per replica (e.g. the pod name) lets a
    # restarted worker take its partitions back without a group rebalance. Apache Kafka only:
    # the embedded Tansu broker rebalances in a loop with it.
    pooul_group_instance_id: str | None = None
    # Consumer group session timeout and heartbeat interval, seconds.
    pooul_session_timeout: float = Field(default=10.0, gt=0)
    pooul_heartbeat_interval: float = Field(default=3.0, gt=0)
    # Longest a fetch waits for new records, ms. Apache Kafka answers as soon as a record
    # arrives, so this only bounds idle polling there; the embedded broker always waits the
    # full time, which would add it to every record's latency.
    pooul_fetch_max_wait_ms: int = Field(default=50, ge=1, le=5000)
    # Circuit breaker: this many RemoteUnavailable failures in a row open it (fetching pauses);
    # after the open interval one probe runs; the interval doubles per failed probe up to the max.
    pooul_circuit_failure_threshold: int = Field(default=5, ge=1)
    pooul_circuit_open_seconds: float = Field(default=5.0, gt=0)
    pooul_circuit_open_max_seconds: float = Field(default=60.0, gt=0)
    # Interface and port of a worker's /healthz, /readyz and /metrics server (0 = any free port).
    pooul_worker_host: str = "0.0.0.0"
    pooul_worker_port: int = Field(default=9102, ge=0, le=65535)

    # --- Trades worker ---
    # Consumer group of `pooul-worker trades` on the trade-signals topic.
    pooul_trades_group_id: str = "pooul-trades"
    # Seconds between reconciliation queries of a pending trade (comma list), then
    # POOUL_RECONCILE_INTERVAL_MAX for every later check until the trade is final or expired.
    pooul_reconcile_schedule: str = "60,120,300,600,1800"
    pooul_reconcile_interval_max: float = Field(default=3600.0, gt=0)
    # ± fraction of each reconciliation delay, stable per trade (spreads query bursts).
    pooul_reconcile_jitter: float = Field(default=0.1, ge=0, lt=1)
    # Seconds after expiry (+ grace) an unconfirmed trade nobody closes is still queried.
    pooul_reconcile_give_up: float = Field(default=86400.0, ge=0)
    # Expiry (seconds after first sight) of trades seen without an order-created signal.
    pooul_order_default_ttl: float = Field(default=7200.0, gt=0)
    # Close expired unpaid trades this service created through the close API, then publish
    # the closed event once a query confirms it.
    pooul_close_expired: bool = True
    # Seconds after `time_expire` before closing (a payment may still be in flight).
    pooul_close_grace: float = Field(default=60.0, ge=0)
    # Seconds a trade's entry (its dedup memory) is kept after its last change: well beyond the
    # platform's ~3 h notify retry span.
    pooul_dedup_retention: float = Field(default=7 * 86400.0, gt=0)
    # Age (seconds) past which a still-pending trade is counted as pending past the retry span.
    pooul_trades_overdue_after: float = Field(default=11400.0, gt=0)
    # CloudEvents `source` prefix of payment events; `/merchants/<merchant_id>` is appended.
    pooul_event_source: str = Field(default="/pooul-worker/trades", min_length=1)

    @field_validator("pooul_reconcile_schedule")
    @classmethod
    def _reconcile_schedule(cls, value: str) -> str:
        from worker.trades.reconcile import parse_schedule

        parse_schedule(value)
        return value

    # --- Orders worker ---
    # Consumer group of `pooul-worker orders` on the order-requests topic.
    pooul_orders_group_id: str = "pooul-orders"
    # Seconds a created order is remembered after it expires (repeats before the expiry are
    # answered without the platform, later ones after one query: did it end unpaid?); the order's
    # expiry itself is time_expire, else POOUL_ORDER_DEFAULT_TTL.
    pooul_orders_state_retention: float = Field(default=7 * 86400.0, gt=0)

    # --- Dev stack ---
    # Directory of `pooul-worker dev`'s child logs (one file per role, emptied on each start).
    pooul_dev_dir: Path = Path(".dev")
    # Port `pooul-worker dev` starts its embedded broker on (a free one when taken); 9092
    # lets `pooul-worker topics describe` and kcat find it without configuration.
    pooul_dev_broker_port: int = Field(default=9092, ge=1, le=65535)
    # Seconds each child gets after SIGTERM before SIGKILL when the dev stack stops.
    pooul_dev_stop_grace: float = Field(default=10.0, gt=0)
    # Consumer group `pooul-worker dlq replay` commits to (`.reason.<r>` appended with --reason),
    # so a second replay does not repeat the first.
    pooul_dlq_group_id: str = Field(default="pooul-dlq-replay", min_length=1)

    # --- Sandbox ---
    # Interface and port `pooul-worker sandbox` listens on (the CLI's --host/--port win).
    pooul_sandbox_host: str = "127.0.0.1"
    pooul_sandbox_port: int = Field(default=8090, ge=0, le=65535)
    # Multiplies every notify retry interval (0.001 turns 15 s into 15 ms); 1.0 = the platform's.
    pooul_sandbox_time_scale: float = Field(default=1.0, gt=0)
    # Base URL put in `pay_url` (the cashier page) when browsers reach the sandbox at another
    # address than its callers do (docker compose); unset: the address the pay call came in on.
    pooul_sandbox_public_url: str | None = None
    # Orders the sandbox keeps in memory; past it the oldest are forgotten (a query for one then
    # answers "order not found"), so a long-running or load-tested sandbox stays bounded.
    pooul_sandbox_max_orders: int = Field(default=100_000, ge=1)

    _merchant_keys: MerchantKeys = MerchantKeys()

    @field_validator("pooul_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("pooul_notify_url")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        """What the platform accepts as `notify_url` (an order request's own `notify_url` rule,
        plus a host): checked here, or every order relying on it would fail at the platform
        call. A trailing slash is dropped, as always: the ingress serves `/pooul/notify`."""
        if value is None:
            return None
        if not _NOTIFY_URL.fullmatch(value):
            raise ValueError("must be an absolute http(s) URL with a host and no spaces")
        if len(value) > 255:
            raise ValueError("at most 255 characters (the platform's limit)")
        return value.rstrip("/")

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
