"""Async client for the Pooul gateway: signs requests, verifies responses, raises typed errors.

    async with PooulClient.from_settings(settings) as client:
        order = await client.create_order(UnifiedOrderRequest(...))
        data = await client.query_order(merchant_id, trade_id=order.trade_id)

No retries inside: callers decide (see `worker.pooul.errors` for what is retryable).
"""

from __future__ import annotations

import secrets
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ValidationError

from schemas.pooul import (
    CloseRequest,
    OrderResponseData,
    QueryData,
    QueryRequest,
    ResponseEnvelope,
    UnifiedOrderRequest,
)
from worker.pooul.errors import (
    MalformedResponse,
    MerchantKeyMissing,
    PooulTimeout,
    RequestRefused,
    ResponseSignatureError,
    TransportError,
    platform_error,
)
from worker.pooul.signing import sign, verify_any_received
from worker.settings import MerchantKeys, Settings

__all__ = ["CLOSE_PATH", "PAY_PATH", "QUERY_PATH", "PooulClient", "new_nonce"]

_Model = TypeVar("_Model", bound=BaseModel)

PAY_PATH = "/paygate/merchant_info/pay"
QUERY_PATH = "/paygate/merchant_info/query"
CLOSE_PATH = "/paygate/merchant_info/order_close"

# 4xx statuses that say "not now" rather than "not this request": an outage, like a 5xx.
_UNAVAILABLE_4XX = frozenset({408, 429})


def new_nonce() -> str:
    """A 32-character random `nonce_str`."""
    return secrets.token_hex(16)


class PooulClient:
    """One reused `aiohttp.ClientSession` to the gateway at `base_url`.

    Keyword arguments:
    - `base_url`: gateway root, e.g. `http://gateway.pooulcloud.cn` or the sandbox's URL.
    - `merchant_keys`: keys to sign requests (newest) and verify responses (any active one).
    - `connect_timeout` / `request_timeout`: seconds; a timeout raises `PooulTimeout`.
    - `max_connections`: connections open at once; every record a worker holds may be waiting
      on a call, so a small pool would cap the worker at `max_connections / latency` calls/s.
    - `session`: an existing session to use (not closed by `stop()`); one is created otherwise.
    """

    def __init__(
        self,
        *,
        base_url: str,
        merchant_keys: MerchantKeys,
        connect_timeout: float = 3.0,
        request_timeout: float = 10.0,
        max_connections: int = 1000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._keys = merchant_keys
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session = session
        self._owns_session = session is None
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PooulClient:
        options: dict[str, Any] = {
            "base_url": settings.pooul_base_url,
            "merchant_keys": settings.merchant_keys,
            "connect_timeout": settings.pooul_connect_timeout,
            "request_timeout": settings.pooul_request_timeout,
            "max_connections": settings.pooul_http_connections,
            **overrides,
        }
        return cls(**options)

    def __repr__(self) -> str:
        return f"PooulClient(base_url={self._base_url!r})"

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("PooulClient already started")
        self._started = True
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> PooulClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def create_order(self, request: UnifiedOrderRequest) -> OrderResponseData:
        """Unified order. On `PooulTimeout` the order may exist: retry with the same mch_trade_id."""
        data = await self._call(PAY_PATH, request.merchant_id, request.to_fields())
        return _validated(OrderResponseData, data, PAY_PATH)

    async def query_order(
        self, merchant_id: str, *, trade_id: str | None = None, mch_trade_id: str | None = None
    ) -> QueryData:
        """The platform's view of a trade (signature verified): the source of truth."""
        request = QueryRequest(
            merchant_id=merchant_id, trade_id=trade_id, mch_trade_id=mch_trade_id
        )
        data = await self._call(QUERY_PATH, merchant_id, request.to_fields())
        return _validated(QueryData, data, QUERY_PATH)

    async def close_order(
        self, merchant_id: str, *, trade_id: str | None = None, mch_trade_id: str | None = None
    ) -> dict[str, Any]:
        """Close an unpaid order; returns the verified `data` (may be empty)."""
        request = CloseRequest(
            merchant_id=merchant_id, trade_id=trade_id, mch_trade_id=mch_trade_id
        )
        return await self._call(CLOSE_PATH, merchant_id, request.to_fields())

    async def _call(self, path: str, merchant_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        key = self._keys.signing_key(merchant_id)
        if key is None:
            raise MerchantKeyMissing(f"no key configured for merchant {merchant_id!r}")
        if self._session is None:
            raise RuntimeError("PooulClient is not started")
        body = {**fields, "nonce_str": fields.get("nonce_str") or new_nonce()}
        body["sign"] = sign(body, key)
        raw = await self._post(path, body)
        envelope = _parse_envelope(raw)
        if envelope.code != 0:
            raise platform_error(envelope.code, envelope.msg, envelope.data)
        data = envelope.data or {}
        keys = self._keys.verification_keys(merchant_id)
        if not envelope.sign or not verify_any_received(data, raw, envelope.sign, keys):
            raise ResponseSignatureError(
                f"response of {path} for merchant {merchant_id} not verified"
            )
        return data

    async def _post(self, path: str, body: dict[str, Any]) -> bytes:
        assert self._session is not None
        try:
            async with self._session.post(
                self._base_url + path,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self._timeout,
            ) as response:
                payload = await response.read()
                status = response.status
                if 400 <= status < 500 and status not in _UNAVAILABLE_4XX:
                    raise RequestRefused(f"{path}: HTTP {status}", status=status)
                if status != 200:
                    raise TransportError(f"{path}: HTTP {status}")
                return payload
        except TimeoutError:
            raise PooulTimeout(f"{path}: no answer within {self._timeout.total} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{path}: {type(exc).__name__}: {exc}") from None


def _validated(model: type[_Model], data: dict[str, Any], path: str) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise MalformedResponse(f"{path}: verified answer with bad or missing {fields}") from None


def _parse_envelope(raw: bytes) -> ResponseEnvelope:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TransportError("gateway answered something that is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("code"), int):
        raise TransportError("gateway answer has no integer `code`")
    if parsed.get("data") is not None and not isinstance(parsed["data"], dict):
        raise TransportError("gateway answer `data` is not an object")
    try:
        return ResponseEnvelope.model_validate(parsed)
    except ValidationError as exc:  # e.g. a non-string `msg` or `sign`: not the gateway's format
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise TransportError(f"gateway answer with bad {fields}") from None
