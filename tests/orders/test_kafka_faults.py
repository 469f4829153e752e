"""Kafka refusing the orders worker's writes after the platform created an order (a proxy in
front of a private broker denies them; skipped against an external broker)."""

from __future__ import annotations

import asyncio

from schemas.orders import OrderCreated
from tests.fixtures.kafka_faults import PRODUCE, TOPIC_AUTHORIZATION_FAILED, KafkaFaultProxy
from tests.orders.rig import order_request, running_orders


async def test_an_order_whose_writes_failed_is_answered_with_its_own_pay_link(
    kafka_faults: KafkaFaultProxy, make_rig
):
    """The pay call succeeded, then the order-created signal could not be written (refused for a
    while) and the attempt was retried. The retry answers with the order the pay call returned
    — its pay link included — instead of paying again: that would get 107, and the platform's
    query (played here with the sandbox's `query_pay_link` off) does not carry the pay link,
    which would leave upstream a `created` nobody can pay."""
    rig = await make_rig(kafka_bootstrap_servers=kafka_faults.bootstrap_servers)
    await rig.faults(query_pay_link=False)
    kafka_faults.deny_produce(
        TOPIC_AUTHORIZATION_FAILED, naming=rig.settings.pooul_topic_trade_signals
    )
    request = order_request()
    async with running_orders(rig.settings):
        await rig.send(request)
        async with asyncio.timeout(15):
            while kafka_faults.failed[PRODUCE] < 2:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.02)
        kafka_faults.heal()
        [(_, result)] = await rig.results(1)
        [signal] = await rig.signals(1)
    [platform_order] = await rig.platform_orders(request["mch_trade_id"])
    assert isinstance(result, OrderCreated), result
    assert result.trade_id == platform_order["trade_id"]
    assert result.pay_url is not None and result.token_id is not None
    assert await rig.pay_calls() == {"0": 1}
    assert await rig.query_calls() == {}
    assert signal.key == result.trade_id.encode()


async def test_a_kept_order_past_its_expiry_is_asked_about_again(
    kafka_faults: KafkaFaultProxy, make_rig
):
    """The writes after the pay call keep failing past the order's expiry: the order the
    process kept may be dead by then (closed), so the retry asks the platform (pay → 107 →
    query) instead of answering with the kept pay link."""
    rig = await make_rig(
        kafka_bootstrap_servers=kafka_faults.bootstrap_servers, pooul_order_default_ttl=1.0
    )
    kafka_faults.deny_produce(
        TOPIC_AUTHORIZATION_FAILED, naming=rig.settings.pooul_topic_trade_signals
    )
    request = order_request()  # no time_expire: the order expires after the default TTL
    async with running_orders(rig.settings):
        await rig.send(request)
        async with asyncio.timeout(15):
            while kafka_faults.failed[PRODUCE] < 1:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.02)
        await asyncio.sleep(3.0)  # attempts go on, past the expiry
        kafka_faults.heal()
        [(_, result)] = await rig.results(1)
    [platform_order] = await rig.platform_orders(request["mch_trade_id"])
    assert isinstance(result, OrderCreated), result
    assert result.trade_id == platform_order["trade_id"]
    pay_calls = await rig.pay_calls()
    assert pay_calls["0"] == 1 and pay_calls["107"] >= 1
    assert (await rig.query_calls()).get("0", 0) >= 1
