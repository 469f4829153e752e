"""The client against the project's sandbox over HTTP: the real protocol end to end."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from schemas.pooul import UnifiedOrderRequest
from schemas.trade_state import TradeState
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY
from tests.fixtures.sandbox import sandbox_settings
from worker.pooul import PooulClient
from worker.pooul.errors import (
    DuplicateOrder,
    OrderNotFound,
    PermanentPlatformError,
    PooulTimeout,
    ResponseSignatureError,
    RetryablePlatformError,
    TransportError,
)
from worker.settings import MerchantKeys


def new_order(total_fee: int = 1234) -> UnifiedOrderRequest:
    return UnifiedOrderRequest(
        merchant_id=MERCHANT_ID,
        mch_trade_id=f"T{uuid.uuid4().hex[:20]}",
        body="测试商品",
        total_fee=total_fee,
        spbill_create_ip="127.0.0.1",
        notify_url="http://127.0.0.1:9/notify",
        buyer_logon_id="buyer@example.com",
        attach="a=1&b=2",
    )


@pytest.fixture
async def client(sandbox):
    keys = MerchantKeys({MERCHANT_ID: [MERCHANT_KEY]})
    async with PooulClient(base_url=sandbox.url, merchant_keys=keys, request_timeout=1.0) as c:
        yield c


async def control(sandbox, method: str, path: str, json: dict | None = None) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{sandbox.url}{path}", json=json) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json()


async def test_create_query_pay_query(sandbox, client):
    """An order is created, unpaid, then paid through the control API and seen paid by query."""
    request = new_order()
    order = await client.create_order(request)
    assert order.trade_id and order.token_id and order.pay_url
    unpaid = await client.query_order(MERCHANT_ID, trade_id=order.trade_id)
    assert unpaid.trade_state is TradeState.NOT_PAID
    assert unpaid.mch_trade_id == request.mch_trade_id and unpaid.total_fee == 1234
    await control(sandbox, "POST", f"/sandbox/orders/{order.trade_id}/pay")
    paid = await client.query_order(MERCHANT_ID, mch_trade_id=request.mch_trade_id)
    assert paid.trade_state is TradeState.PAID and paid.trade_state.is_final
    assert paid.total_fee == 1234 and paid.out_trade_id and paid.time_end


async def test_duplicate_mch_trade_id_is_107(client):
    """A second order with the same mch_trade_id raises DuplicateOrder."""
    request = new_order()
    await client.create_order(request)
    with pytest.raises(DuplicateOrder):
        await client.create_order(request)


async def test_unknown_order_is_301(client):
    """Querying an order that does not exist raises OrderNotFound."""
    with pytest.raises(OrderNotFound):
        await client.query_order(MERCHANT_ID, trade_id="does-not-exist")


async def test_close_unpaid_order(client):
    """Closing an unpaid order makes the query answer closed."""
    order = await client.create_order(new_order())
    await client.close_order(MERCHANT_ID, trade_id=order.trade_id)
    closed = await client.query_order(MERCHANT_ID, trade_id=order.trade_id)
    assert closed.trade_state is TradeState.CLOSED


async def test_signing_uses_the_newest_rotated_key(sandbox):
    """With keys [new, old] the client signs with the newest: a sandbox without it answers 101."""
    keys = MerchantKeys({MERCHANT_ID: ["not-the-sandbox-key", MERCHANT_KEY]})
    async with PooulClient(base_url=sandbox.url, merchant_keys=keys) as c:
        with pytest.raises(PermanentPlatformError) as caught:
            await c.create_order(new_order())
    assert caught.value.code == 101


async def test_rotation_on_both_sides(make_sandbox):
    """Mid-rotation, either side may sign with either active key and both still verify."""
    sandbox_keys = orjson.dumps({MERCHANT_ID: ["new-key", MERCHANT_KEY]}).decode()
    rotated = await make_sandbox(settings=sandbox_settings(pooul_merchant_keys=sandbox_keys))
    keys = MerchantKeys({MERCHANT_ID: [MERCHANT_KEY, "new-key"]})
    async with PooulClient(base_url=rotated.url, merchant_keys=keys) as c:
        order = await c.create_order(new_order())
        assert (
            await c.query_order(MERCHANT_ID, trade_id=order.trade_id)
        ).trade_id == order.trade_id


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"bad_signature_rate": 1.0}, ResponseSignatureError),
        ({"error_500_rate": 1.0}, TransportError),
        ({"code_601_rate": 1.0}, RetryablePlatformError),
    ],
)
async def test_sandbox_faults_raise_retryable_errors(sandbox, client, fault, error):
    """Each injected gateway fault surfaces as its retryable error type, never as data."""
    order = await client.create_order(new_order())
    await control(sandbox, "PUT", "/sandbox/faults", {"merchant_id": MERCHANT_ID, **fault})
    with pytest.raises(error) as caught:
        await client.query_order(MERCHANT_ID, trade_id=order.trade_id)
    assert caught.value.retryable


async def test_created_then_timed_out_then_107(sandbox, client):
    """ "Created, then timed out": the client times out, the retry with the same id gets 107."""
    request = new_order()
    await control(
        sandbox, "PUT", "/sandbox/faults", {"create_then_timeout_rate": 1.0, "hang_seconds": 5}
    )
    with pytest.raises(PooulTimeout):
        await client.create_order(request)
    await control(sandbox, "DELETE", "/sandbox/faults")
    with pytest.raises(DuplicateOrder):
        await client.create_order(request)
