"""The client's fault paths against a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from schemas.pooul import UnifiedOrderRequest
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY
from worker.broker import free_port
from worker.pooul import PooulClient
from worker.pooul.errors import (
    DuplicateOrder,
    MalformedResponse,
    MerchantKeyMissing,
    OrderNotFound,
    PermanentPlatformError,
    PooulTimeout,
    RequestRefused,
    ResponseSignatureError,
    RetryablePlatformError,
    TransportError,
)
from worker.pooul.signing import sign, verify
from worker.settings import MerchantKeys

Responder = Callable[[dict], web.StreamResponse]
KEYS = MerchantKeys({MERCHANT_ID: [MERCHANT_KEY]})


def order_request() -> UnifiedOrderRequest:
    return UnifiedOrderRequest(
        merchant_id=MERCHANT_ID,
        mch_trade_id="T-1",
        body="测试商品",
        total_fee=12,
        spbill_create_ip="127.0.0.1",
        notify_url="http://127.0.0.1/notify",
        buyer_logon_id="buyer@example.com",
    )


def signed(data: dict, key: str = MERCHANT_KEY) -> web.Response:
    envelope = {"code": 0, "msg": None, "data": data, "version": "1.0", "sign_type": "md5"}
    envelope["sign"] = sign(data, key)
    return web.json_response(envelope)


class Gateway:
    """A real aiohttp server whose answer each test scripts; it records every request body."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.respond: Responder = lambda body: signed({"trade_id": "1"})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        result = self.respond(body)
        if asyncio.iscoroutine(result):
            return await result
        return result


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, str]]:
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/paygate/merchant_info/{name}", gw.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield gw, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def client(gateway) -> AsyncIterator[PooulClient]:
    _, url = gateway
    async with PooulClient(base_url=url, merchant_keys=KEYS, request_timeout=0.5) as c:
        yield c


async def test_request_is_signed_with_nonce(gateway, client):
    """The request carries a 32-char nonce and a signature over every top-level field."""
    gw, _ = gateway
    gw.respond = lambda body: signed(
        {"trade_id": "P1", "mch_trade_id": body["mch_trade_id"], "pay_url": "u", "token_id": "t"}
    )
    order = await client.create_order(order_request())
    sent = gw.requests[0]
    assert order.trade_id == "P1" and order.token_id == "t"
    assert len(sent["nonce_str"]) == 32
    assert verify(sent, sent["sign"], MERCHANT_KEY)
    assert sent["body"] == "测试商品" and sent["total_fee"] == 12


async def test_unverified_response_is_an_error(gateway, client):
    """A response signed with another key raises and its data is never returned."""
    gw, _ = gateway
    gw.respond = lambda body: signed({"trade_id": "P1", "trade_state": 0}, key="wrong")
    with pytest.raises(ResponseSignatureError) as caught:
        await client.query_order(MERCHANT_ID, trade_id="P1")
    assert caught.value.retryable


async def test_unsigned_success_is_an_error(gateway, client):
    """code 0 without a signature is not data."""
    gw, _ = gateway
    gw.respond = lambda body: web.json_response({"code": 0, "data": {"trade_id": "P1"}})
    with pytest.raises(ResponseSignatureError):
        await client.query_order(MERCHANT_ID, trade_id="P1")


async def test_extra_response_fields_are_verified_and_kept(gateway, client):
    """Fields the docs do not list are covered by the signature and kept on the model."""
    gw, _ = gateway
    gw.respond = lambda body: signed(
        {
            "trade_id": "P1",
            "merchant_id": MERCHANT_ID,
            "trade_state": "0",
            "total_fee": "12",
            "new_field": "x",
            "buyer_pay_amount": "0.12",
        }
    )
    data = await client.query_order(MERCHANT_ID, trade_id="P1")
    assert data.total_fee == 12 and data.buyer_pay_amount == 12
    assert data.model_extra == {"new_field": "x"}


@pytest.mark.parametrize(
    ("code", "error", "retryable"),
    [
        (101, PermanentPlatformError, False),
        (103, PermanentPlatformError, False),
        (200, PermanentPlatformError, False),
        (202, PermanentPlatformError, False),
        (1500, PermanentPlatformError, False),
        (9999, PermanentPlatformError, False),
        (108, RetryablePlatformError, True),
        (600, RetryablePlatformError, True),
        (601, RetryablePlatformError, True),
        (107, DuplicateOrder, False),
        (301, OrderNotFound, False),
    ],
)
async def test_platform_codes_map_to_typed_errors(gateway, client, code, error, retryable):
    """Each documented code raises its type with the retryable flag of the protocol page."""
    gw, _ = gateway
    gw.respond = lambda body: web.json_response({"code": code, "msg": f"m{code}"})
    with pytest.raises(error) as caught:
        await client.create_order(order_request())
    assert type(caught.value) is error
    assert caught.value.code == code and caught.value.msg == f"m{code}"
    assert caught.value.retryable is retryable


async def test_http_500_is_retryable_transport_error(gateway, client):
    """HTTP 5xx raises a retryable TransportError."""
    gw, _ = gateway
    gw.respond = lambda body: web.Response(status=502, text="bad gateway")
    with pytest.raises(TransportError) as caught:
        await client.query_order(MERCHANT_ID, trade_id="P1")
    assert caught.value.retryable


@pytest.mark.parametrize("status", [400, 403, 404, 413])
async def test_http_4xx_is_a_refusal_of_this_request_not_an_outage(gateway, client, status):
    """A 4xx (a proxy or firewall refusing this request) is a retryable RequestRefused with the
    status, not a TransportError: callers bound its retries instead of waiting it out."""
    gw, _ = gateway
    gw.respond = lambda body: web.Response(status=status, text="refused")
    with pytest.raises(RequestRefused) as caught:
        await client.query_order(MERCHANT_ID, trade_id="P1")
    assert caught.value.retryable and caught.value.status == status
    assert not isinstance(caught.value, TransportError)


@pytest.mark.parametrize("status", [408, 429, 302, 204])
async def test_timeouts_throttling_and_other_statuses_are_transport_errors(gateway, client, status):
    """408 and 429 say "not now", like a 5xx; any other status but 200 is no answer either."""
    gw, _ = gateway
    gw.respond = lambda body: web.Response(status=status)
    with pytest.raises(TransportError, match=f"HTTP {status}"):
        await client.query_order(MERCHANT_ID, trade_id="P1")


async def test_garbage_body_is_transport_error(gateway, client):
    """A non-JSON body is a TransportError, not a crash."""
    gw, _ = gateway
    gw.respond = lambda body: web.Response(text="<html>oops</html>")
    with pytest.raises(TransportError):
        await client.query_order(MERCHANT_ID, trade_id="P1")


async def test_verified_answer_without_trade_id_is_malformed(gateway, client):
    """A correctly signed success that lacks trade_id is a retryable MalformedResponse, and not
    a TransportError: the platform is up, so callers must not retry it as an outage."""
    gw, _ = gateway
    gw.respond = lambda body: signed({"mch_trade_id": "T-1"})
    with pytest.raises(MalformedResponse) as caught:
        await client.create_order(order_request())
    assert caught.value.retryable
    assert not isinstance(caught.value, TransportError)


async def test_envelope_with_fields_of_the_wrong_type_is_a_transport_error(gateway, client):
    """An envelope whose `msg` or `sign` is not text is not the gateway's format: a
    TransportError like any other garbage answer, never a raw pydantic ValidationError."""
    gw, _ = gateway
    gw.respond = lambda body: web.json_response({"code": 0, "msg": 7, "data": {}, "sign": 1})
    with pytest.raises(TransportError, match="msg"):
        await client.query_order(MERCHANT_ID, trade_id="P1")


async def test_slow_gateway_times_out(gateway, client):
    """No answer within the total timeout raises PooulTimeout (retryable)."""
    gw, _ = gateway

    async def slow(body):
        await asyncio.sleep(2)
        return signed({"trade_id": "P1"})

    gw.respond = slow
    with pytest.raises(PooulTimeout) as caught:
        await client.query_order(MERCHANT_ID, trade_id="P1")
    assert caught.value.retryable


async def test_connection_refused_is_retryable():
    """Nothing listening raises a retryable TransportError."""
    url = f"http://127.0.0.1:{free_port()}"
    async with PooulClient(base_url=url, merchant_keys=KEYS) as c:
        with pytest.raises(TransportError) as caught:
            await c.query_order(MERCHANT_ID, trade_id="P1")
    assert caught.value.retryable


async def test_unknown_merchant_key_is_refused_locally(gateway, client):
    """A merchant without a configured key fails before any request is sent."""
    gw, _ = gateway
    with pytest.raises(MerchantKeyMissing) as caught:
        await client.query_order("unknown", trade_id="P1")
    assert not caught.value.retryable and gw.requests == []


async def test_lifecycle():
    """stop() twice is harmless; a second start() is an error; repr hides keys."""
    c = PooulClient(base_url="http://127.0.0.1:1", merchant_keys=KEYS)
    await c.start()
    with pytest.raises(RuntimeError):
        await c.start()
    await c.stop()
    await c.stop()
    assert MERCHANT_KEY not in repr(c)


async def test_connection_pool_follows_the_setting(gateway):
    """`POOUL_HTTP_CONNECTIONS` sizes the pool: with 2 connections, 6 slow calls run 2 at a time."""
    gw, url = gateway
    running = 0
    peak = 0

    async def slow(body):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return signed(
            {"trade_id": "P1", "mch_trade_id": "T-1", "merchant_id": MERCHANT_ID, "trade_state": 0}
        )

    gw.respond = slow
    async with PooulClient(base_url=url, merchant_keys=KEYS, max_connections=2) as c:
        await asyncio.gather(*(c.query_order(MERCHANT_ID, trade_id="P1") for _ in range(6)))
    assert peak == 2 and len(gw.requests) == 6
