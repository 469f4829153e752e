"""The orders worker end to end: a real broker, the sandbox over HTTP, the real handler."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from schemas.orders import OrderCreated, OrderFailed
from schemas.pooul import UnifiedOrderRequest
from schemas.signals import OrderCreatedSignal, parse_trade_signal
from tests.fixtures.broker import MERCHANT_ID
from tests.orders.rig import NOTIFY_URL, metric, order_request, running_orders
from worker.pooul import PooulClient


async def test_valid_request_creates_order_and_signal(make_rig):
    """A valid request yields `created` with the sandbox's ids, and a signal keyed by trade_id."""
    rig = await make_rig()
    request = order_request(request_id="req-1", attach="cart-9", time_expire=4_000_000_000)
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        [(record, result)] = await rig.results(1)
        [signal_record] = await rig.signals(1)

    [platform] = await rig.platform_orders(request["mch_trade_id"])
    assert isinstance(result, OrderCreated)
    assert record.key == request["mch_trade_id"].encode()
    assert record.headers["pooul-status"] == b"created"
    assert record.headers["pooul-request-id"] == b"req-1"
    assert (result.trade_id, result.token_id, result.pay_url, result.appid) == (
        platform["trade_id"],
        platform["token_id"],
        platform["pay_url"],
        platform["appid"],
    )
    assert (result.merchant_id, result.total_fee, result.request_id) == (MERCHANT_ID, 1200, "req-1")
    assert platform["attach"] == "cart-9"
    assert result.expires_at.timestamp() == 4_000_000_000

    signal = parse_trade_signal(signal_record.value or b"")
    assert isinstance(signal, OrderCreatedSignal)
    assert signal_record.key == platform["trade_id"].encode()
    assert signal_record.headers["pooul-kind"] == b"order_created"
    assert signal_record.headers["pooul-merchant-id"] == MERCHANT_ID.encode()
    assert (signal.merchant_id, signal.mch_trade_id, signal.total_fee) == (
        MERCHANT_ID,
        request["mch_trade_id"],
        1200,
    )
    assert signal.expires_at.timestamp() == 4_000_000_000
    assert signal.request_id == "req-1"
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="new") == 1


async def test_same_request_three_times_is_one_platform_order(make_rig):
    """Three copies of one request make one platform order and three identical `created`."""
    rig = await make_rig()
    request = order_request()
    async with running_orders(rig.settings) as registry:
        for _ in range(3):
            await rig.send(request)
        results = [result for _, result in await rig.results(3)]
    assert all(isinstance(r, OrderCreated) for r in results)
    ids = {(r.trade_id, r.token_id, r.pay_url, r.appid, r.created_at) for r in results}
    assert len(ids) == 1
    assert len(await rig.platform_orders(request["mch_trade_id"])) == 1
    assert await rig.pay_calls() == {"0": 1}
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="repeat") == 2
    # No second signal for repeats: the first one was durable before the state was written.
    assert len(await rig.reader(rig.settings.pooul_topic_trade_signals).settle(0.3)) == 1


async def test_created_then_timeout_recovers_by_query(make_rig):
    """Platform created the order but the answer timed out: the retry hits 107 and recovers it."""
    rig = await make_rig(pooul_request_timeout=0.3)
    await rig.faults(create_then_timeout_rate=1.0, hang_seconds=1.0)
    request = order_request()
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        [(_, result)] = await rig.results(1)
    [platform] = await rig.platform_orders(request["mch_trade_id"])
    assert isinstance(result, OrderCreated)
    assert (result.trade_id, result.token_id, result.pay_url) == (
        platform["trade_id"],
        platform["token_id"],
        platform["pay_url"],
    )
    assert await rig.pay_calls() == {"timeout_after_create": 1, "107": 1}
    assert metric(registry, "pooul_orders_retries_total", reason="timeout") == 1
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="recovered") == 1
    [signal_record] = await rig.signals(1)
    assert signal_record.key == platform["trade_id"].encode()


async def test_other_amount_for_created_order_conflicts(make_rig):
    """The same mch_trade_id with another amount answers `failed` (conflict), no new order."""
    rig = await make_rig()
    first = order_request(total_fee=100)
    second = {**first, "total_fee": 200}
    async with running_orders(rig.settings) as registry:
        await rig.send(first)
        await rig.send(second)
        [(_, created), (_, conflict)] = await rig.results(2)
    assert isinstance(created, OrderCreated)
    assert isinstance(conflict, OrderFailed)
    assert (conflict.reason, conflict.code, conflict.retryable) == ("conflict", 107, False)
    assert conflict.trade_id == created.trade_id
    assert "100 fen" in conflict.msg and "200 fen" in conflict.msg
    assert len(await rig.platform_orders(first["mch_trade_id"])) == 1
    assert metric(registry, "pooul_orders_conflicts_total", source="state") == 1


async def test_other_buyer_for_created_order_conflicts(make_rig):
    """The same mch_trade_id and amount for another buyer answers `failed` (conflict) naming the
    field, not the first buyer's pay page; a repeat from another IP is still the same order."""
    rig = await make_rig()
    first = order_request()
    from_elsewhere = {**first, "spbill_create_ip": "10.9.9.9"}
    other_buyer = {**first, "buyer_id": "2088999999999999"}
    async with running_orders(rig.settings) as registry:
        for request in (first, from_elsewhere, other_buyer):
            await rig.send(request)
        [(_, created), (_, repeat), (_, conflict)] = await rig.results(3)
    assert isinstance(created, OrderCreated) and isinstance(repeat, OrderCreated)
    assert (repeat.trade_id, repeat.pay_url) == (created.trade_id, created.pay_url)
    assert isinstance(conflict, OrderFailed)
    assert (conflict.reason, conflict.code, conflict.retryable) == ("conflict", 107, False)
    assert conflict.trade_id == created.trade_id
    assert "another buyer_id;" in conflict.msg and "2088999999999999" not in conflict.msg
    assert len(await rig.platform_orders(first["mch_trade_id"])) == 1
    assert metric(registry, "pooul_orders_conflicts_total", source="state") == 1


async def test_repeat_after_expiry_conflicts_once_the_order_ended_unpaid(make_rig):
    """Past an order's expiry a repeat asks the platform: closed → a conflict, never the pay_url
    nobody can pay any more; paid, or not closed yet (the trades worker closes it) → the same
    `created`."""
    rig = await make_rig()
    async with running_orders(rig.settings) as registry:
        expire = int(time.time()) + 3
        names = ("paid", "unpaid", "closed")
        requests = {name: order_request(time_expire=expire) for name in names}
        for request in requests.values():
            await rig.send(request)
        firsts = {result.mch_trade_id: result for _, result in await rig.results(3)}
        created = {name: firsts[request["mch_trade_id"]] for name, request in requests.items()}
        assert all(isinstance(result, OrderCreated) for result in created.values())
        for name, action in (("paid", "pay"), ("closed", "close")):
            url = f"{rig.sandbox.url}/sandbox/orders/{created[name].trade_id}/{action}"
            async with rig.http.post(url, json={"notify": False}) as resp:
                assert resp.status == 200, await resp.text()
        await asyncio.sleep(expire - time.time() + 0.2)
        for request in requests.values():
            await rig.send(request)
        later = {result.mch_trade_id: result for _, result in (await rig.results(6))[3:]}
    again = {name: later[request["mch_trade_id"]] for name, request in requests.items()}
    for name in ("paid", "unpaid"):
        result = again[name]
        assert isinstance(result, OrderCreated), name
        assert (result.trade_id, result.pay_url, result.created_at) == (
            created[name].trade_id,
            created[name].pay_url,
            created[name].created_at,
        )
    conflict = again["closed"]
    assert isinstance(conflict, OrderFailed)
    assert (conflict.reason, conflict.retryable) == ("conflict", False)
    assert conflict.trade_id == created["closed"].trade_id
    assert "(trade_state 3)" in conflict.msg and "new mch_trade_id" in conflict.msg
    assert metric(registry, "pooul_orders_conflicts_total", source="platform") == 1
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="repeat") == 2
    # One order each: a late repeat never makes a new one; one query per late repeat.
    assert await rig.pay_calls() == {"0": 3}
    assert await rig.query_calls() == {"0": 3}


async def test_existing_closed_order_conflicts_instead_of_created(make_rig):
    """A 107 whose queried order was closed (it expired unpaid) answers a conflict naming it,
    not `created` with a pay_url nobody can pay; no order-created signal."""
    rig = await make_rig()
    request = order_request()
    async with PooulClient.from_settings(rig.settings) as client:
        existing = await client.create_order(
            UnifiedOrderRequest(**{**request, "notify_url": NOTIFY_URL})
        )
        await client.close_order(MERCHANT_ID, trade_id=existing.trade_id)
    result, registry = await _platform_conflict(rig, request)
    assert result.trade_id == existing.trade_id
    assert "closed (trade_state 3)" in result.msg
    assert metric(registry, "pooul_orders_conflicts_total", source="platform") == 1
    assert await rig.reader(rig.settings.pooul_topic_trade_signals).settle(0.3) == []


async def test_existing_platform_order_with_other_amount_conflicts(make_rig):
    """A 107 whose queried order has another amount answers a conflict, not that order's ids."""
    rig = await make_rig()
    request = order_request(total_fee=300)
    # Someone else (another system, an old deployment) created this mch_trade_id for 100 fen.
    async with PooulClient.from_settings(rig.settings) as client:
        other = {**request, "total_fee": 100, "notify_url": NOTIFY_URL}
        existing = await client.create_order(UnifiedOrderRequest(**other))
    result, registry = await _platform_conflict(rig, request)
    assert result.trade_id == existing.trade_id
    assert "100 fen" in result.msg and "300 fen" in result.msg
    assert len(await rig.platform_orders(request["mch_trade_id"])) == 1
    assert await rig.pay_calls() == {"0": 1, "107": 1}
    assert metric(registry, "pooul_orders_conflicts_total", source="platform") == 1
    assert await rig.reader(rig.settings.pooul_topic_trade_signals).settle(0.3) == []


async def test_repeat_after_restart_is_answered_from_restored_state(make_rig):
    """A new worker on the same topics answers from the restored changelog, no platform call."""
    rig = await make_rig()
    request = order_request()
    async with running_orders(rig.settings):
        await rig.send(request)
        [(_, first)] = await rig.results(1)
    # A fresh group re-reads the request from the beginning (as after lost commits) and then
    # gets the same request again: both are repeats answered from the restored state.
    again = rig.settings.model_copy(
        update={"pooul_orders_group_id": rig.settings.pooul_orders_group_id + "-2"}
    )
    async with running_orders(again) as registry:
        await rig.send(request)
        results = [result for _, result in await rig.results(3)]
    assert all(isinstance(r, OrderCreated) for r in results)
    assert {(r.trade_id, r.token_id, r.created_at) for r in results} == {
        (first.trade_id, first.token_id, first.created_at)
    }
    assert await rig.pay_calls() == {"0": 1}
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="repeat") == 2


async def _platform_conflict(rig, request) -> tuple[OrderFailed, CollectorRegistry]:
    """`request` through a fresh orders worker, whose one result must be a 107 conflict."""
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        [(_, result)] = await rig.results(1)
    assert isinstance(result, OrderFailed)
    assert (result.reason, result.code, result.retryable) == ("conflict", 107, False)
    return result, registry
