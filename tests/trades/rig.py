"""A test rig for the trades worker: sandbox over HTTP, the real ingress, the real broker.

rig.create_order(total_fee=100)   → a platform order + its OrderCreatedSignal
rig.pay(trade_id)                 → the sandbox's buyer pays, its notify hits the ingress
rig.events / rig.dead_letters     → what the worker published, read back from the broker
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.dead_letter import DeadLetter, parse_dead_letter
from schemas.events import PaymentEvent
from schemas.pooul import UnifiedOrderRequest
from schemas.signals import KIND_HEADER, MERCHANT_HEADER, OrderCreatedSignal
from tests.fixtures.broker import MERCHANT_ID
from worker.ingress.app import NOTIFY_PATH
from worker.kafka import make_consumer, make_producer
from worker.pooul import PooulClient
from worker.settings import Settings
from worker.trades.metrics import TradesMetrics
from worker.trades.service import trades_processor


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    trade_id: str
    mch_trade_id: str
    total_fee: int
    merchant_id: str = MERCHANT_ID


@dataclass(slots=True)
class Collected:
    """Everything read back from the payment-events and dead-letter topics."""

    events: list[tuple[bytes | None, PaymentEvent]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 20.0, what: str = "condition"
) -> None:
    """Poll `predicate` until true; fail the test naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


class Collector:
    """Reads the output topics from the beginning (no group) into a `Collected`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.seen = Collected()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._position: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        consumer = make_consumer(self._settings, group_id=None)
        await consumer.start()
        topics = (
            self._settings.pooul_topic_payment_events,
            self._settings.pooul_topic_dead_letters,
        )
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in range(self._settings.pooul_topic_partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        assert self._consumer is not None
        events_topic = self._settings.pooul_topic_payment_events
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for tp, messages in batch.items():
                for message in messages:
                    if tp.topic == events_topic:
                        event = PaymentEvent.model_validate_json(message.value)
                        self.seen.events.append((message.key, event))
                    else:
                        self.seen.dead_letters.append(parse_dead_letter(message.value))
                    self._position[tp] = message.offset + 1

    async def caught_up(self, within: float = 10.0) -> None:
        """Wait until everything written to the output topics so far has been read."""
        assert self._consumer is not None
        consumer = self._consumer
        ends = await consumer.end_offsets(list(consumer.assignment()))

        def done() -> bool:
            return all(self._position.get(tp, 0) >= end for tp, end in ends.items())

        await wait_until(done, within=within, what="the collector to catch up")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class FlakyAnswers:
    """An HTTP hop in front of the ingress that forwards every notify but answers `fail` to the
    first `fail_first` deliveries: the platform then retries a notify we already hold, exactly
    as when a merchant's `success` is lost on the way back."""

    def __init__(self, *, target: str, fail_first: int) -> None:
        self._target = target
        self.fail_first = fail_first
        self.deliveries = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post(NOTIFY_PATH, self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{NOTIFY_PATH}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        async with self._session.post(
            self._target, data=body, headers={"Content-Type": "application/json"}
        ) as answer:
            text = await answer.text()
        self.deliveries += 1
        if self.deliveries <= self.fail_first:
            return web.Response(text="fail")
        return web.Response(text=text, status=answer.status)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class TradesRig:
    """Drives one scenario: places orders, plays the buyer, reads what the worker published."""

    def __init__(self, *, settings: Settings, sandbox_url: str, notify_url: str) -> None:
        self.settings = settings
        self.sandbox_url = sandbox_url
        self.notify_url = notify_url
        self.collector = Collector(settings)
        self.client = PooulClient.from_settings(settings)
        self.producer = make_producer(settings)
        self.http = aiohttp.ClientSession()

    @property
    def events(self) -> list[tuple[bytes | None, PaymentEvent]]:
        return self.collector.seen.events

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return self.collector.seen.dead_letters

    async def settle(self) -> None:
        """Read everything the worker has published so far (for "nothing else" assertions)."""
        await self.collector.caught_up()

    def events_of(self, trade_id: str) -> list[PaymentEvent]:
        return [event for _, event in self.events if event.data.trade_id == trade_id]

    async def start(self) -> None:
        await self.client.start()
        await self.producer.start()
        await self.collector.start()

    async def stop(self) -> None:
        await self.collector.stop()
        await self.producer.stop()
        await self.client.stop()
        await self.http.close()

    async def create_order(
        self,
        *,
        total_fee: int = 100,
        expire_in: float | None = None,
        signal: bool = True,
        notify_url: str | None = None,
        merchant_id: str = MERCHANT_ID,
    ) -> PlacedOrder:
        """A platform order (notifies to the ingress) and, unless `signal=False`, its signal."""
        mch_trade_id = f"M{uuid.uuid4().hex[:20]}"
        expire = None if expire_in is None else int(time.time() + expire_in)
        created = await self.client.create_order(
            UnifiedOrderRequest(
                merchant_id=merchant_id,
                mch_trade_id=mch_trade_id,
                body="test goods",
                total_fee=total_fee,
                spbill_create_ip="127.0.0.1",
                notify_url=notify_url or self.notify_url,
                buyer_logon_id="buyer@example.com",
                time_expire=expire,
            )
        )
        order = PlacedOrder(created.trade_id, mch_trade_id, total_fee, merchant_id)
        if signal:
            expires_at = expire if expire is not None else time.time() + 3600
            await self.send_order_created(order, expires_at=expires_at)
        return order

    async def send_order_created(self, order: PlacedOrder, *, expires_at: float) -> None:
        """What the orders worker writes once the platform accepted an order."""
        signal = OrderCreatedSignal(
            trade_id=order.trade_id,
            merchant_id=order.merchant_id,
            mch_trade_id=order.mch_trade_id,
            total_fee=order.total_fee,
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            created_at=datetime.now(UTC),
        )
        await self.producer.send_and_wait(
            self.settings.pooul_topic_trade_signals,
            signal.model_dump_json().encode(),
            key=order.trade_id.encode(),
            headers=[
                (KIND_HEADER, b"order_created"),
                (MERCHANT_HEADER, order.merchant_id.encode()),
            ],
        )

    async def _control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
            method, f"{self.sandbox_url}{path}", data=None if body is None else orjson.dumps(body)
        ) as response:
            payload = await response.read()
            assert response.status == 200, f"{method} {path}: {response.status} {payload!r}"
            return orjson.loads(payload)

    async def pay(self, trade_id: str, *, total_fee: int | None = None) -> dict[str, Any]:
        body = {} if total_fee is None else {"total_fee": total_fee}
        result: dict[str, Any] = await self._control(
            "POST", f"/sandbox/orders/{trade_id}/pay", body
        )
        return result

    async def refund(self, trade_id: str) -> None:
        await self._control("POST", f"/sandbox/orders/{trade_id}/refund", {})

    async def forge(self, trade_id: str, trade_state: int) -> None:
        await self._control(
            "POST", f"/sandbox/orders/{trade_id}/forge", {"trade_state": trade_state}
        )

    async def order(self, trade_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._control("GET", f"/sandbox/orders/{trade_id}")
        return result

    async def faults(self, **config: Any) -> None:
        await self._control("PUT", "/sandbox/faults", config)

    async def clear_faults(self) -> None:
        await self._control("DELETE", "/sandbox/faults")


def sample(metrics: TradesMetrics, name: str, **labels: str) -> float:
    """A counter's current value (0 when the labelled child does not exist yet)."""
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, metrics: TradesMetrics | None = None
) -> AsyncIterator[TradesMetrics]:
    """An in-process trades worker (the same wiring as `pooul-worker trades`)."""
    metrics = metrics if metrics is not None else TradesMetrics()
    async with trades_processor(settings, metrics=metrics) as processor, processor:
        yield metrics
