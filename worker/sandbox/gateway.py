"""The merchant-facing gateway: `pay`, `query` and `order_close` at the platform's paths.

Each call goes through the same steps, in the platform's order of checks:

1. injected latency, then an injected HTTP 500 (the merchant's faults, else the global ones);
2. JSON object? (100) · `merchant_id` (103) · known merchant (200) · `sign` (103) ·
   signature over the top-level fields with any of the merchant's keys (101);
   then an injected `force_code` (nothing happens), as a refusal of the merchant's account;
3. the endpoint's own fields (103, 202) and lookups (107, 301, 600);
4. an injected code 601 (nothing happens), else the effect;
5. the answer, signed over `data` with the merchant's newest key (or a wrong key, by fault);
   for `pay` under `create_then_timeout_rate`, the order is created but the answer waits
   `hang_seconds` first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from schemas.codes import ResultCode
from schemas.money import ascii_digits
from worker.pooul.signing import verify_any
from worker.sandbox.core import SANDBOX_KEY, NewOrder, Sandbox, TransitionError, loosened
from worker.sandbox.faults import Endpoint, FaultConfig
from worker.sandbox.store import Order

__all__ = ["CLOSE_PATH", "PAY_PATH", "QUERY_PATH", "GatewayError", "routes", "validate_pay"]

log = logging.getLogger(__name__)

PAY_PATH: Final = "/paygate/merchant_info/pay"
QUERY_PATH: Final = "/paygate/merchant_info/query"
CLOSE_PATH: Final = "/paygate/merchant_info/order_close"
PAY_TYPE: Final = "alipay.jsapi"

_PAY_REQUIRED = (
    "pay_type",
    "merchant_id",
    "mch_trade_id",
    "body",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
)


# What a forced code says (`force_code` fault); undocumented codes get a generic message.
_FORCED_MESSAGES: Final[dict[int, str]] = {
    ResultCode.JSON_PARSE_ERROR: "JSON parse error",
    ResultCode.BAD_SIGNATURE: "signature verification failed",
    ResultCode.MISSING_FIELD: "missing required field",
    ResultCode.DUPLICATE_ORDER: "duplicate mch_trade_id",
    ResultCode.OUTSIDE_SERVICE_HOURS: "outside service hours",
    ResultCode.CHANNEL_MISCONFIGURED: "payment channel not configured for this merchant",
    ResultCode.UNKNOWN_MERCHANT: "unknown merchant",
    ResultCode.MERCHANT_DISABLED: "merchant disabled",
    ResultCode.PAY_TYPE_NOT_ENABLED: "pay_type not enabled for this merchant",
    ResultCode.ORDER_NOT_FOUND: "order not found",
    ResultCode.CHANNEL_ERROR: "upstream channel error",
    ResultCode.CHANNEL_TIMEOUT: "upstream channel timeout",
}


class GatewayError(Exception):
    """A call the platform answers with a non-zero `code` (and no `data`, no `sign`)."""

    def __init__(self, code: int, msg: str, **extra: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": int(self.code), "msg": self.msg, **self.extra}


@dataclass(slots=True)
class _Answer:
    data: dict[str, Any]
    hang: bool = False


_Operation = Callable[[Sandbox, Mapping[str, Any], str, FaultConfig, str], _Answer]


def routes() -> list[web.RouteDef]:
    """The merchant-facing endpoints, at the platform's paths."""
    return [
        web.post(PAY_PATH, _pay_handler),
        web.post(QUERY_PATH, _query_handler),
        web.post(CLOSE_PATH, _close_handler),
    ]


async def _pay_handler(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "pay", _pay)


async def _query_handler(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "query", _query)


async def _close_handler(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "order_close", _close)


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


def _present(fields: Mapping[str, Any], name: str) -> bool:
    return fields.get(name) not in (None, "")


async def _serve(
    request: web.Request, endpoint: Endpoint, operation: _Operation
) -> web.StreamResponse:
    sandbox = request.app[SANDBOX_KEY]
    fields = _parse(await request.read())
    claimed = fields.get("merchant_id") if fields is not None else None
    config = sandbox.faults.for_merchant(str(claimed) if claimed is not None else None)
    await sandbox.pause(sandbox.faults.latency_seconds(config))
    if sandbox.faults.hit(config.error_500_rate):
        status = config.error_500_status
        sandbox.count(endpoint, f"http_{status}")
        return web.Response(status=status, text=f"HTTP {status} (sandbox fault)")
    try:
        if fields is None:
            raise GatewayError(ResultCode.JSON_PARSE_ERROR, "request body is not a JSON object")
        merchant_id = _authenticate(sandbox, fields)
        _forced_code(sandbox, config, endpoint)
        base_url = sandbox.public_url or _origin(request)
        answer = operation(sandbox, fields, merchant_id, config, base_url)
    except GatewayError as exc:
        sandbox.count(endpoint, int(exc.code))
        log.debug("gateway error", extra={"endpoint": endpoint, "code": int(exc.code)})
        return _json(exc.body())
    if answer.hang:
        sandbox.count(endpoint, "timeout_after_create")
        await sandbox.pause(config.hang_seconds)
    else:
        sandbox.count(endpoint, 0)
    wrong = sandbox.faults.hit(config.bad_signature_rate)
    return _json(
        {
            "code": 0,
            "msg": None,
            "data": answer.data,
            "version": "1.0",
            "sign_type": "md5",
            "sign": sandbox.sign_data(merchant_id, answer.data, wrong=wrong),
        }
    )


def _origin(request: web.Request) -> str:
    """The address the call came in on, for `pay_url`: from the Host header, or — when that
    cannot be parsed (`Host: h:99999`) — the socket's own address."""
    try:
        return str(request.url.origin())
    except ValueError:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host, port = sockname[:2] if sockname else ("127.0.0.1", 80)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _authenticate(sandbox: Sandbox, fields: Mapping[str, Any]) -> str:
    """The calling merchant, once its signature verified (200 before 101, as the platform)."""
    if not _present(fields, "merchant_id"):
        raise GatewayError(ResultCode.MISSING_FIELD, "missing required field: merchant_id")
    merchant_id = str(fields["merchant_id"])
    keys = sandbox.merchant_keys.verification_keys(merchant_id)
    if not keys:
        raise GatewayError(ResultCode.UNKNOWN_MERCHANT, f"unknown merchant: {merchant_id}")
    signature = fields.get("sign")
    if not _present(fields, "sign"):
        raise GatewayError(ResultCode.MISSING_FIELD, "missing required field: sign")
    if not isinstance(signature, str) or not verify_any(fields, signature, keys):
        log.info("sandbox rejected a bad signature", extra={"merchant_id": merchant_id})
        raise GatewayError(ResultCode.BAD_SIGNATURE, "signature verification failed")
    return merchant_id


def _forced_code(sandbox: Sandbox, config: FaultConfig, endpoint: Endpoint) -> None:
    """The `force_code` fault: refuse an authenticated call with that code, changing nothing."""
    code = config.force_code
    if code is None or endpoint not in config.force_code_endpoints:
        return
    if not sandbox.faults.hit(config.force_code_rate):
        return
    msg = f"{_FORCED_MESSAGES.get(code, f'code {code}')} (sandbox fault)"
    if code == ResultCode.CHANNEL_ERROR:
        raise GatewayError(code, msg, err_code="SANDBOX_FAULT", err_msg=msg)
    raise GatewayError(code, msg)


def _channel_timeout(sandbox: Sandbox, config: FaultConfig) -> None:
    if sandbox.faults.hit(config.code_601_rate):
        raise GatewayError(ResultCode.CHANNEL_TIMEOUT, "upstream channel timeout (sandbox fault)")


def _invalid(name: str, problem: str) -> GatewayError:
    # The doc set has no separate "invalid value" code; the platform reports field problems as 103.
    return GatewayError(ResultCode.MISSING_FIELD, f"invalid field {name}: {problem}")


def _text(fields: Mapping[str, Any], name: str, *, max_length: int | None = None) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(name, "must be a string")
    text = str(value)
    if max_length is not None and len(text) > max_length:
        raise _invalid(name, f"at most {max_length} characters")
    return text


def _unix_seconds(fields: Mapping[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    text = str(value)
    if isinstance(value, bool) or not ascii_digits(text) or len(text) != 10:
        raise _invalid(name, "Unix seconds (10 digits) expected")
    return int(text)


def _positive_fen(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    elif isinstance(value, str) and ascii_digits(value):
        amount = int(value)
    else:
        raise _invalid("total_fee", f"an integer amount in fen is required, got {value!r}")
    if amount <= 0:
        raise _invalid("total_fee", "must be positive")
    return amount


def _notify_url(value: str) -> str:
    """An absolute http(s) URL the notifier can really call: a bad host or port is refused
    here (103), not discovered at delivery time."""
    if len(value) > 255:
        raise _invalid("notify_url", "at most 255 characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535
        host = parts.hostname
        if host:
            host.encode("idna")  # raises UnicodeError for an empty or over-long label
    except (ValueError, UnicodeError) as exc:
        raise _invalid("notify_url", f"not a usable URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _invalid("notify_url", "an absolute http(s) URL is required")
    return value


def validate_pay(fields: Mapping[str, Any]) -> NewOrder:
    """Check a unified order for `alipay.jsapi` the way the platform does (103, 202)."""
    for name in _PAY_REQUIRED:
        if not _present(fields, name):
            raise GatewayError(ResultCode.MISSING_FIELD, f"missing required field: {name}")
    pay_type = str(fields["pay_type"])
    if pay_type != PAY_TYPE:
        raise GatewayError(
            ResultCode.PAY_TYPE_NOT_ENABLED,
            f"pay_type {pay_type} is not enabled for this merchant (sandbox: {PAY_TYPE} only)",
        )
    buyer_id = _text(fields, "buyer_id", max_length=64)
    buyer_logon_id = _text(fields, "buyer_logon_id", max_length=100)
    if buyer_id is None and buyer_logon_id is None:
        raise GatewayError(
            ResultCode.MISSING_FIELD, "missing required field: buyer_id or buyer_logon_id"
        )
    _text(fields, "nonce_str", max_length=32)
    return NewOrder(
        merchant_id=str(fields["merchant_id"]),
        mch_trade_id=_text(fields, "mch_trade_id", max_length=32) or "",
        pay_type=pay_type,
        body=_text(fields, "body") or "",
        total_fee=_positive_fen(fields["total_fee"]),
        notify_url=_notify_url(_text(fields, "notify_url") or ""),
        spbill_create_ip=_text(fields, "spbill_create_ip") or "",
        buyer_id=buyer_id,
        buyer_logon_id=buyer_logon_id,
        attach=_text(fields, "attach", max_length=128),
        device_info=_text(fields, "device_info"),
        time_start=_unix_seconds(fields, "time_start"),
        time_expire=_unix_seconds(fields, "time_expire"),
    )


def _pay(
    sandbox: Sandbox,
    fields: Mapping[str, Any],
    merchant_id: str,
    config: FaultConfig,
    base_url: str,
) -> _Answer:
    request = validate_pay(fields)
    if sandbox.store.mch_trade_id_used(merchant_id, request.mch_trade_id):
        raise GatewayError(
            ResultCode.DUPLICATE_ORDER,
            f"duplicate mch_trade_id: {request.mch_trade_id} was already used by this merchant",
        )
    _channel_timeout(sandbox, config)
    order = sandbox.create_order(request, base_url=base_url)
    hang = sandbox.faults.hit(config.create_then_timeout_rate)
    data = {
        "merchant_id": order.merchant_id,
        "mch_trade_id": order.mch_trade_id,
        "trade_id": order.trade_id,
        "pay_type": order.pay_type,
        "token_id": order.token_id,
        "pay_url": order.pay_url,
        "appid": order.appid,
        "nonce_str": sandbox.ids.nonce(),
    }
    log.info(
        "sandbox order created",
        extra={"merchant_id": merchant_id, "trade_id": order.trade_id, "hang": hang},
    )
    return _Answer(data=data, hang=hang)


def _lookup(sandbox: Sandbox, fields: Mapping[str, Any], merchant_id: str) -> Order:
    """The merchant's order by `trade_id` (wins) or `mch_trade_id`, else 103/301."""
    trade_id = _text(fields, "trade_id")
    if trade_id is not None:
        order = sandbox.store.get(trade_id)
        if order is None or order.merchant_id != merchant_id:
            raise GatewayError(ResultCode.ORDER_NOT_FOUND, f"order not found: trade_id {trade_id}")
        return order
    mch_trade_id = _text(fields, "mch_trade_id", max_length=32)
    if mch_trade_id is not None:
        found = sandbox.store.by_mch_trade_id(merchant_id, mch_trade_id)
        if found is None:
            raise GatewayError(
                ResultCode.ORDER_NOT_FOUND, f"order not found: mch_trade_id {mch_trade_id}"
            )
        return found
    raise GatewayError(ResultCode.MISSING_FIELD, "missing required field: trade_id or mch_trade_id")


def _query(
    sandbox: Sandbox,
    fields: Mapping[str, Any],
    merchant_id: str,
    config: FaultConfig,
    base_url: str,
) -> _Answer:
    order = _lookup(sandbox, fields, merchant_id)
    _channel_timeout(sandbox, config)
    data = sandbox.query_data(order, pay_link=config.query_pay_link)
    return _Answer(data=loosened(data) if config.loose_types else data)


def _close(
    sandbox: Sandbox,
    fields: Mapping[str, Any],
    merchant_id: str,
    config: FaultConfig,
    base_url: str,
) -> _Answer:
    order = _lookup(sandbox, fields, merchant_id)
    _channel_timeout(sandbox, config)
    try:
        sandbox.close(order, by="merchant", notify=False)
    except TransitionError as exc:
        # The docs' code for "the channel refused": 600 passes the channel's err_code through.
        err_code = "ORDER_PAID" if order.trade_state in (0, 1) else "TRADE_STATE_ERROR"
        raise GatewayError(
            ResultCode.CHANNEL_ERROR, f"{err_code}: {exc}", err_code=err_code, err_msg=str(exc)
        ) from None
    data = {
        "merchant_id": order.merchant_id,
        "trade_id": order.trade_id,
        "mch_trade_id": order.mch_trade_id,
        "trade_state": order.trade_state,
        "nonce_str": sandbox.ids.nonce(),
    }
    return _Answer(data=data)
