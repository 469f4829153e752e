"""The control API (forge, listing, errors), the cashier page and the `pooul-worker sandbox` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from typing import Any

import aiohttp
import orjson

from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, MERCHANT_KEYS
from tests.sandbox.wire import (
    PAY,
    QUERY,
    call,
    control,
    create_order,
    data_verifies,
    pay_fields,
    post_json,
)
from worker.broker import free_port
from worker.sandbox import SandboxServer


async def _order(
    http: aiohttp.ClientSession, sandbox: SandboxServer, **overrides: Any
) -> dict[str, Any]:
    return await create_order(http, sandbox.url, MERCHANT_ID, MERCHANT_KEY, prefix="C", **overrides)


async def test_forge_sends_a_signed_claim_and_leaves_the_order_unchanged(
    sandbox, notify_receiver, http
):
    """`forge` delivers a validly signed notify claiming paid while the order stays unpaid."""
    created = await _order(http, sandbox, notify_url=notify_receiver.url, total_fee=500)
    status, body = await control(
        http,
        sandbox.url,
        "POST",
        f"/sandbox/orders/{created['trade_id']}/forge",
        {"trade_state": 0},
    )
    assert status == 200 and body["notification"]["kind"] == "forged"
    [notify] = await notify_receiver.wait_for(1)
    assert data_verifies(notify.json, MERCHANT_KEY)
    assert notify.data["trade_state"] == 0 and notify.data["total_fee"] == 500
    assert notify.data["out_trade_id"]
    query = await call(
        http,
        sandbox.url,
        QUERY,
        {"merchant_id": MERCHANT_ID, "trade_id": created["trade_id"]},
        MERCHANT_KEY,
    )
    assert query["data"]["trade_state"] == 2 and "out_trade_id" not in query["data"]


async def test_forge_must_claim_another_state(sandbox, http):
    """Forging the order's own state is a 409; an impossible trade_state is a 400."""
    created = await _order(http, sandbox)
    path = f"/sandbox/orders/{created['trade_id']}/forge"
    status, body = await control(http, sandbox.url, "POST", path, {"trade_state": 2})
    assert status == 409 and "already" in body["error"]
    for bad in ({"trade_state": 9}, {}, {"trade_state": "0"}):
        status, body = await control(http, sandbox.url, "POST", path, bad)
        assert status == 400 and "trade_state" in body["error"], bad


async def test_unknown_orders_and_bad_bodies_get_clear_errors(sandbox, http):
    """Unknown trade ids get 404, malformed or unexpected bodies 400, both with a message."""
    for action in ("pay", "fail", "close", "forge"):
        status, body = await control(
            http, sandbox.url, "POST", f"/sandbox/orders/nope/{action}", {"trade_state": 0}
        )
        assert status == 404 and "nope" in body["error"]
    status, body = await control(http, sandbox.url, "GET", "/sandbox/orders/nope")
    assert status == 404
    created = await _order(http, sandbox)
    url = f"{sandbox.url}/sandbox/orders/{created['trade_id']}/pay"
    status, body = await post_json(http, url, b"{oops")
    assert status == 400 and "JSON" in body["error"]
    for bad in ({"total_fee": 0}, {"total_fee": "12"}, {"amount": 12}):
        status, body = await post_json(http, url, bad)
        assert status == 400 and body["error"], bad
    _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{created['trade_id']}")
    assert order["trade_state"] == 2


async def test_orders_listing_filters_by_merchant_and_mch_trade_id(sandbox, http):
    """`GET /sandbox/orders` lists orders, filtered by merchant_id and mch_trade_id."""
    first = await _order(http, sandbox)
    await _order(http, sandbox)
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?merchant_id={MERCHANT_ID}"
    )
    assert listed["count"] == 2
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?mch_trade_id={first['mch_trade_id']}"
    )
    assert [o["trade_id"] for o in listed["orders"]] == [first["trade_id"]]
    _, listed = await control(http, sandbox.url, "GET", "/sandbox/orders?merchant_id=nobody")
    assert listed == {"count": 0, "orders": []}


async def test_cashier_page_shows_the_order_and_its_amount_in_yuan(sandbox, http):
    """`pay_url` serves an HTML cashier with the amount in yuan, the ids and the three buttons,
    with order text HTML-escaped."""
    created = await _order(http, sandbox, total_fee=1999, body="<b>Tea</b> {{amount}}")
    async with http.get(created["pay_url"]) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "19.99" in page
    assert created["trade_id"] in page and MERCHANT_ID in page
    assert "&lt;b&gt;Tea&lt;/b&gt; {{amount}}" in page and "<b>Tea</b>" not in page
    for button in ('id="pay"', 'id="fail"', 'id="close"'):
        assert button in page
    assert "/sandbox/orders/" in page
    async with http.get(f"{sandbox.url}/sandbox/cashier/404") as response:
        assert response.status == 404


async def test_public_url_is_the_base_of_pay_url(make_sandbox, http):
    """With a public URL configured, `pay_url` points there instead of the caller's address."""
    server = await make_sandbox(public_url="http://localhost:18090/")
    created = await _order(http, server)
    assert created["pay_url"] == f"http://localhost:18090/sandbox/cashier/{created['trade_id']}"


async def test_cli_serves_the_gateway_and_stops_on_sigterm(http):
    """`pooul-worker sandbox --port N` serves signed calls and exits 0 on SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "POOUL_MERCHANT_KEYS": orjson.dumps(MERCHANT_KEYS).decode(),
        "POOUL_LOG_FORMAT": "text",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "sandbox",
        "--port",
        str(port),
        "--time-scale",
        "0.001",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(30):
            while True:
                try:
                    async with http.get(base + "/sandbox/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        fields = pay_fields(MERCHANT_ID, "cli-" + uuid.uuid4().hex[:8])
        response = await call(http, base, PAY, fields, MERCHANT_KEY)
        assert response["code"] == 0 and data_verifies(response, MERCHANT_KEY)
        assert response["data"]["pay_url"].startswith(base)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"sandbox listening" in stderr
        assert MERCHANT_KEY.encode() not in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
