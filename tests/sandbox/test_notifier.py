"""The notify sender: signed notifies to `notify_url`, the scaled retry schedule, attempt records."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY
from tests.sandbox.wire import QUERY, call, control, create_order, data_verifies
from worker.sandbox import DELIVERIES, RETRY_INTERVALS, SandboxServer

# The protocol page's schedule, written out here rather than taken from the code under test.
PROTOCOL_INTERVALS = (15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600)


async def _order(
    http: aiohttp.ClientSession, sandbox: SandboxServer, notify_url: str, **overrides: Any
) -> dict[str, Any]:
    return await create_order(
        http, sandbox.url, MERCHANT_ID, MERCHANT_KEY, prefix="N", notify_url=notify_url, **overrides
    )


async def _settled(
    http: aiohttp.ClientSession, sandbox: SandboxServer, trade_id: str
) -> dict[str, Any]:
    """The order once none of its notifications is still pending."""
    async with asyncio.timeout(20):
        while True:
            _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{trade_id}")
            if order["notifications"] and all(
                n["status"] != "pending" for n in order["notifications"]
            ):
                settled: dict[str, Any] = order
                return settled
            await asyncio.sleep(0.01)


async def test_control_pay_delivers_a_signed_notify(sandbox, notify_receiver, http):
    """Paying through the control API POSTs a notify signed over data with the merchant key,
    whose data matches the query, and records one successful delivery."""
    created = await _order(http, sandbox, notify_receiver.url, attach="a=1")
    status, paid = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay"
    )
    assert status == 200 and paid["trade_state"] == 0
    [notify] = await notify_receiver.wait_for(1)
    envelope = notify.json
    assert envelope["code"] == 0 and envelope["sign_type"] == "md5"
    assert data_verifies(envelope, MERCHANT_KEY)
    data = envelope["data"]
    assert data["trade_id"] == created["trade_id"] and data["trade_state"] == 0
    assert data["merchant_id"] == MERCHANT_ID and data["mch_trade_id"] == created["mch_trade_id"]
    assert data["attach"] == "a=1" and data["pay_type"] == "alipay.jsapi"
    assert isinstance(data["fund_bill_list"], str)
    query = await call(
        http,
        sandbox.url,
        QUERY,
        {"merchant_id": MERCHANT_ID, "trade_id": created["trade_id"]},
        MERCHANT_KEY,
    )
    for name in ("out_trade_id", "ch_trade_id", "time_end", "buyer_user_id", "fund_bill_list"):
        assert data[name] == query["data"][name]
    order = await _settled(http, sandbox, created["trade_id"])
    [attempt] = order["notify_attempts"]
    assert attempt["outcome"] == "success" and attempt["http_status"] == 200
    assert attempt["delivery"] == 1 and attempt["body"] == "success"
    assert order["notifications"][0]["status"] == "delivered"


async def test_failing_receiver_gets_retries_on_the_scaled_schedule(sandbox, notify_receiver, http):
    """A receiver failing 3 times gets deliveries 2-4 no sooner than the scaled intervals, and
    nothing after its `success`; every attempt carries the same signed body."""
    notify_receiver.fail_first = 3
    created = await _order(http, sandbox, notify_receiver.url)
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    order = await _settled(http, sandbox, created["trade_id"])
    attempts = order["notify_attempts"]
    assert [a["outcome"] for a in attempts] == ["rejected"] * 3 + ["success"]
    assert [a["delivery"] for a in attempts] == [1, 2, 3, 4]
    scale = 0.001
    for before, after, interval in zip(attempts, attempts[1:], PROTOCOL_INTERVALS, strict=False):
        # Tolerance: wall-clock stamps vs the loop's monotonic timer.
        assert after["at"] - before["at"] >= interval * scale - 0.0005
    # Delivered: nothing is left scheduled, so no fifth delivery can follow.
    assert sandbox.sandbox.notifier.pending == 0
    received = notify_receiver.received
    assert len(received) == 4
    assert len({r.body for r in received}) == 1


async def test_receiver_never_answering_success_gets_exactly_ten_deliveries(
    make_sandbox, notify_receiver, http
):
    """Without a `success` answer the sandbox delivers exactly 10 times, then gives up."""
    server = await make_sandbox(time_scale=0.0001)
    notify_receiver.answer = "fail"
    created = await _order(http, server, notify_receiver.url)
    await control(http, server.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    order = await _settled(http, server, created["trade_id"])
    assert [a["delivery"] for a in order["notify_attempts"]] == list(range(1, 11))
    assert order["notifications"][0]["status"] == "gave_up"
    assert len(notify_receiver.received) == 10
    gaps = [
        b["at"] - a["at"]
        for a, b in zip(order["notify_attempts"], order["notify_attempts"][1:], strict=False)
    ]
    for gap, interval in zip(gaps, PROTOCOL_INTERVALS, strict=True):
        # Not early (timer tolerance), and not a different, slower schedule (loose: CI is busy).
        assert interval * 0.0001 - 0.0005 <= gap <= interval * 0.0001 * 1.5 + 0.25


def test_the_retry_schedule_is_the_protocols() -> None:
    """10 deliveries, 15 s, 15 s, 30 s, 3 min, 30 min ×4, 1 h apart (about 3 h in all)."""
    assert tuple(RETRY_INTERVALS) == PROTOCOL_INTERVALS
    assert DELIVERIES == len(PROTOCOL_INTERVALS) + 1 == 10


async def test_success_is_the_plain_word_in_any_case_with_http_200(sandbox, notify_receiver, http):
    """`SUCCESS` acknowledges the notify; `  success\\n` (not the plain string), `success!` and
    `success` with HTTP 500 do not: the platform counts anything else as a failure, and what
    passes the sandbox must pass there."""
    notify_receiver.answer = "SUCCESS"
    notify_receiver.fail_first = 2
    notify_receiver.fail_answer = "  success\n"
    created = await _order(http, sandbox, notify_receiver.url)
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    order = await _settled(http, sandbox, created["trade_id"])
    assert [a["outcome"] for a in order["notify_attempts"]] == ["rejected", "rejected", "success"]

    notify_receiver.fail_first = 0
    notify_receiver.answer = "success"
    notify_receiver.status = 500
    received = len(notify_receiver.received)
    created = await _order(http, sandbox, notify_receiver.url)
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    await notify_receiver.wait_for(received + 1)
    notify_receiver.status = 200
    order = await _settled(http, sandbox, created["trade_id"])
    attempts = order["notify_attempts"]
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [
        ("rejected", 500),
        ("success", 200),
    ]


async def test_a_redirect_is_not_followed_nor_success(make_sandbox, http):
    """A `notify_url` answering 302 (to a page that says `success`) is a failed delivery: the
    platform posts to the URL given, it does not follow a redirect with the body."""
    from aiohttp import web

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/ok"})

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/notify", moved)
    app.router.add_route("*", "/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        server = await make_sandbox()
        created = await _order(http, server, f"http://127.0.0.1:{port}/notify")
        await control(http, server.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
        async with asyncio.timeout(10):
            while True:
                _, order = await control(
                    http, server.url, "GET", f"/sandbox/orders/{created['trade_id']}"
                )
                if order["notify_attempts"]:
                    break
                await asyncio.sleep(0.01)
        first = order["notify_attempts"][0]
        assert (first["outcome"], first["http_status"]) == ("rejected", 302)
    finally:
        await runner.cleanup()


async def test_slow_answer_counts_as_failure(make_sandbox, notify_receiver, http):
    """An answer later than the notify deadline is a failed delivery (outcome timeout), retried."""
    server = await make_sandbox(notify_timeout=0.2)
    notify_receiver.delay = 0.5
    created = await _order(http, server, notify_receiver.url)
    await control(http, server.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    await notify_receiver.wait_for(2)
    notify_receiver.delay = 0.0
    order = await _settled(http, server, created["trade_id"])
    outcomes = [a["outcome"] for a in order["notify_attempts"]]
    assert outcomes[0] == "timeout" and outcomes[-1] == "success"


async def test_unreachable_notify_url_is_recorded_as_connection_error(sandbox, http):
    """A notify_url nobody listens on is recorded as connection errors, with the error text."""
    created = await _order(http, sandbox, "http://127.0.0.1:9/pooul/notify")
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    async with asyncio.timeout(10):
        while True:
            _, order = await control(
                http, sandbox.url, "GET", f"/sandbox/orders/{created['trade_id']}"
            )
            if len(order["notify_attempts"]) >= 2:
                break
            await asyncio.sleep(0.01)
    first = order["notify_attempts"][0]
    assert first["outcome"] == "connection_error" and first["error"]
    assert first["http_status"] is None


async def test_fail_and_close_notify_their_states(sandbox, notify_receiver, http):
    """Control fail and close move the order to 7 and 3 and notify those states."""
    failed = await _order(http, sandbox, notify_receiver.url)
    closed = await _order(http, sandbox, notify_receiver.url)
    status, body = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{failed['trade_id']}/fail"
    )
    assert (status, body["trade_state"]) == (200, 7)
    status, body = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{closed['trade_id']}/close"
    )
    assert (status, body["trade_state"]) == (200, 3)
    notifies = await notify_receiver.wait_for(2)
    states = {n.data["trade_id"]: n.data["trade_state"] for n in notifies}
    assert states == {failed["trade_id"]: 7, closed["trade_id"]: 3}
    assert all(data_verifies(n.json, MERCHANT_KEY) for n in notifies)


async def test_refund_of_a_paid_order_notifies_refund_requested(sandbox, notify_receiver, http):
    """Control refund moves a paid order to 1 (refund requested) and notifies it, amount and ids
    kept; the query says 1 too. An unpaid order cannot be refunded (409)."""
    created = await _order(http, sandbox, notify_receiver.url, total_fee=250)
    trade_id = created["trade_id"]
    unpaid = await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/refund")
    assert unpaid[0] == 409 and "only a paid order can be refunded" in unpaid[1]["error"]
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/pay")
    status, order = await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/refund")
    assert (status, order["trade_state"]) == (200, 1)
    paid, refunded = await notify_receiver.wait_for(2)
    assert (paid.data["trade_state"], refunded.data["trade_state"]) == (0, 1)
    for name in ("total_fee", "out_trade_id", "ch_trade_id", "time_end"):
        assert refunded.data[name] == paid.data[name], name
    assert refunded.data["total_fee"] == 250
    assert data_verifies(refunded.json, MERCHANT_KEY)
    answer = await call(
        http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID, "trade_id": trade_id}, MERCHANT_KEY
    )
    assert answer["data"]["trade_state"] == 1
    again = await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/refund")
    assert again[0] == 409


async def test_pay_with_other_amount_reports_the_paid_amount(sandbox, notify_receiver, http):
    """`pay` with a `total_fee` body notifies and reports the amount actually paid."""
    created = await _order(http, sandbox, notify_receiver.url, total_fee=100)
    await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay", {"total_fee": 1}
    )
    [notify] = await notify_receiver.wait_for(1)
    assert notify.data["total_fee"] == 1
    assert '"amount":"0.01"' in notify.data["fund_bill_list"]


async def test_pay_without_notify_sends_nothing(sandbox, notify_receiver, http):
    """`{"notify": false}` settles the order silently (for tests of the reconciliation path)."""
    created = await _order(http, sandbox, notify_receiver.url)
    status, order = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay", {"notify": False}
    )
    assert status == 200 and order["trade_state"] == 0 and order["notifications"] == []
    assert sandbox.sandbox.notifier.pending == 0
    assert notify_receiver.received == []


async def test_expired_order_cannot_be_paid(sandbox, notify_receiver, http):
    """An order past its time_expire stays unpaid: control pay answers 409 naming the expiry."""
    created = await _order(http, sandbox, notify_receiver.url, time_expire=int(time.time()) - 1)
    status, body = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay"
    )
    assert status == 409 and "expired" in body["error"]
    _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{created['trade_id']}")
    assert order["trade_state"] == 2
    status, body = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/close"
    )
    assert status == 200 and body["trade_state"] == 3


async def test_stop_cancels_pending_notifies(make_sandbox, notify_receiver, http):
    """Stopping the sandbox cancels a notify waiting for its next retry; nothing arrives after."""
    server = await make_sandbox(time_scale=1.0)
    notify_receiver.answer = "fail"
    created = await _order(http, server, notify_receiver.url)
    await control(http, server.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay")
    await notify_receiver.wait_for(1)
    order = server.sandbox.store.get(created["trade_id"])
    assert order is not None
    await server.stop()
    assert order.notifications[0].status == "cancelled"
    assert server.sandbox.notifier.pending == 0
    assert len(notify_receiver.received) == 1


@pytest.mark.parametrize("action", ["pay", "fail"])
async def test_settled_order_refuses_a_second_settlement(sandbox, http, action):
    """A paid or failed order cannot be paid, failed or closed again (409)."""
    created = await _order(http, sandbox, "http://127.0.0.1:9/n")
    trade_id = created["trade_id"]
    await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/{action}", {"notify": False}
    )
    for again in ("pay", "fail", "close"):
        status, body = await control(
            http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/{again}"
        )
        assert status == 409, (action, again, body)
