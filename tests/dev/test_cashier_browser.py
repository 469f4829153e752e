"""The sandbox cashier page, driven by a real headless Chromium, pays an order end to end."""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaConsumer

from schemas.events import PaymentEvent
from schemas.orders import OrderCreated, OrderRequest, parse_order_result
from tests.fixtures.broker import MERCHANT_ID
from worker.ingress.server import IngressServer
from worker.kafka import make_consumer, make_producer
from worker.orders.service import orders_processor
from worker.trades.service import trades_processor


async def _next_value(consumer: AIOKafkaConsumer, wait: float = 30.0) -> bytes:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                return bytes(record.value)
    raise AssertionError(f"nothing arrived within {wait} s")


async def test_pressing_pay_on_the_cashier_page_publishes_a_succeeded_event(
    chromium, sandbox, make_settings
) -> None:
    """Order request → orders worker → pay_url opened in Chromium → Pay clicked → notify to the
    ingress → trades worker → one com.pooul.payment.succeeded event with the checked amount."""
    suffix = uuid.uuid4().hex[:8]
    settings = await make_settings(
        pooul_base_url=sandbox.url,
        pooul_orders_group_id=f"orders-{suffix}",
        pooul_trades_group_id=f"trades-{suffix}",
    )
    async with IngressServer(settings=settings, host="127.0.0.1", port=0) as ingress:
        settings = settings.model_copy(update={"pooul_notify_url": f"{ingress.url}/pooul/notify"})
        results = make_consumer(settings, settings.pooul_topic_order_results)
        events = make_consumer(settings, settings.pooul_topic_payment_events)
        producer = make_producer(settings)
        await results.start()
        await events.start()
        await producer.start()
        try:
            async with (
                orders_processor(settings) as orders,
                orders,
                trades_processor(settings) as trades,
                trades,
            ):
                request = OrderRequest(
                    merchant_id=MERCHANT_ID,
                    mch_trade_id=f"browser-{suffix}",
                    body="cashier page test",
                    total_fee=1234,
                    spbill_create_ip="127.0.0.1",
                    buyer_logon_id="buyer@example.com",
                )
                await producer.send_and_wait(
                    settings.pooul_topic_order_requests,
                    request.model_dump_json(exclude_none=True).encode(),
                    key=request.mch_trade_id.encode(),
                )
                created = parse_order_result(await _next_value(results))
                assert isinstance(created, OrderCreated) and created.pay_url is not None

                page = await chromium.page()
                await page.navigate(created.pay_url)
                assert await page.evaluate("document.title") == (
                    f"Pooul sandbox cashier — {request.mch_trade_id}"
                )
                assert await page.evaluate("document.getElementById('amount').textContent") == (
                    "12.34"
                )
                await page.click("#pay")
                shown = await page.wait_for(
                    "(t => t.startsWith('Done') && t)"
                    "(document.getElementById('result').textContent)"
                )
                assert "paid" in shown

                event = PaymentEvent.model_validate_json(await _next_value(events))
        finally:
            await producer.stop()
            await events.stop()
            await results.stop()
    assert event.type == "com.pooul.payment.succeeded"
    assert event.subject == request.mch_trade_id
    assert event.data.trade_id == created.trade_id
    assert event.data.total_fee == 1234 and event.data.amount_checked is True
    assert event.data.confirmed_by == "notify"
