"""Test-side Pooul wire code, written from the protocol page alone (independent of
`worker.pooul.signing`), so the sandbox is checked against a second implementation."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import aiohttp

PAY = "/paygate/merchant_info/pay"
QUERY = "/paygate/merchant_info/query"
CLOSE = "/paygate/merchant_info/order_close"


def md5_sign(fields: dict[str, Any], key: str) -> str:
    """Protocol page, "Signing": drop sign/null/"", sort by name, `k=v&...&key=K`, MD5, upper hex."""
    parts = []
    for name in sorted(fields, key=lambda n: n.encode("ascii")):
        value = fields[name]
        if name == "sign" or value is None or value == "":
            continue
        if value is True or value is False:
            value = "true" if value else "false"
        parts.append(f"{name}={value}")
    payload = "&".join(parts) + "&key=" + key
    return hashlib.md5(payload.encode("utf-8")).hexdigest().upper()


def signed(fields: dict[str, Any], key: str) -> dict[str, Any]:
    return {**fields, "sign": md5_sign(fields, key)}


def data_verifies(envelope: dict[str, Any], key: str) -> bool:
    """Responses and notifies are signed over `data` only."""
    return str(envelope.get("sign", "")).upper() == md5_sign(envelope["data"], key)


def pay_fields(merchant_id: str, mch_trade_id: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "pay_type": "alipay.jsapi",
        "merchant_id": merchant_id,
        "mch_trade_id": mch_trade_id,
        "body": "云南普洱 357g",
        "total_fee": 12,
        "spbill_create_ip": "203.0.113.7",
        "notify_url": "http://127.0.0.1:9/pooul/notify",
        "buyer_logon_id": "13800001234",
        "version": "1.0",
        "sign_type": "MD5",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


async def post_json(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with session.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def call(
    session: aiohttp.ClientSession, base_url: str, path: str, fields: dict[str, Any], key: str
) -> dict[str, Any]:
    """Sign `fields` with `key`, POST them, return the JSON envelope (HTTP 200 expected)."""
    status, body = await post_json(session, base_url + path, signed(fields, key))
    assert status == 200, (status, body)
    assert isinstance(body, dict)
    return body


async def control(
    session: aiohttp.ClientSession, base_url: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    async with session.request(method, base_url + path, **kwargs) as resp:
        return resp.status, await resp.json()


def new_mch_trade_id(prefix: str) -> str:
    """A fresh merchant order number (`prefix` tells the test modules' orders apart)."""
    return prefix + uuid.uuid4().hex[:20]


async def create_order(
    session: aiohttp.ClientSession,
    base_url: str,
    merchant_id: str,
    key: str,
    *,
    prefix: str = "S",
    **overrides: Any,
) -> dict[str, Any]:
    """A unified order that must succeed (code 0): its answer's `data`."""
    fields = pay_fields(merchant_id, new_mch_trade_id(prefix), **overrides)
    response = await call(session, base_url, PAY, fields, key)
    assert response["code"] == 0, response
    data: dict[str, Any] = response["data"]
    return data
