"""The orders worker's test rig: requests in, results and signals out, the sandbox beside.

`rig = await make_rig()` gives fresh topics, a sandbox and settings pointing at both;
`async with running_orders(rig.settings) as registry:` runs the real worker in this process;
`await rig.send(order_request())` then `await rig.results(1)` (each result with its record).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from schemas.orders import OrderCreated, OrderFailed, OrderRejected, parse_order_result
from tests.fixtures.broker import MERCHANT_ID, SettingsFactory
from worker.kafka import make_consumer, make_producer
from worker.orders import orders_processor
from worker.sandbox import SandboxServer
from worker.settings import Settings

NOTIFY_URL = "http://127.0.0.1:9/pooul/notify"

# Small time scales so retries and the circuit breaker act within a test's budget.
FAST_RUNTIME = {
    "pooul_retry_backoff_base": 0.02,
    "pooul_retry_backoff_max": 0.2,
    "pooul_circuit_open_seconds": 0.1,
    "pooul_circuit_open_max_seconds": 0.5,
    "pooul_commit_interval": 0.1,
    "pooul_max_attempts": 3,
    "pooul_request_timeout": 2.0,
    "pooul_notify_url": NOTIFY_URL,
    "pooul_worker_port": 0,
    "pooul_worker_host": "127.0.0.1",
    # The embedded broker delays a group's first join by about half the session timeout.
    "pooul_session_timeout": 2.0,
    "pooul_heartbeat_interval": 0.5,
}

Result = OrderCreated | OrderRejected | OrderFailed


def order_request(**changes: Any) -> dict[str, Any]:
    """A valid order request for the test merchant; `field=...` removes a field."""
    base: dict[str, Any] = {
        "merchant_id": MERCHANT_ID,
        "mch_trade_id": f"T{uuid.uuid4().hex[:20]}",
        "body": "sandbox coffee",
        "total_fee": 1200,
        "spbill_create_ip": "10.1.2.3",
        "buyer_id": "2088102146225135",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


@dataclass(frozen=True)
class Received:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


@dataclass
class Rig:
    """Topics on the test broker, a sandbox, and clients to talk to both."""

    settings: Settings
    sandbox: SandboxServer
    producer: AIOKafkaProducer
    http: aiohttp.ClientSession
    _readers: dict[str, TopicReader] = field(default_factory=dict)

    async def send(
        self,
        payload: dict[str, Any] | bytes | None,
        *,
        key: Any = ...,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce one order request; the key defaults to the payload's mch_trade_id."""
        if key is ...:
            assert isinstance(payload, dict)
            key = payload["mch_trade_id"]
        value = orjson.dumps(payload) if isinstance(payload, dict) else payload
        raw_key = key.encode() if isinstance(key, str) else key
        await self.producer.send_and_wait(
            self.settings.pooul_topic_order_requests, value, key=raw_key, headers=headers
        )

    async def send_many(self, payloads: list[dict[str, Any]]) -> None:
        """Produce many order requests at once (keys = their mch_trade_ids), all acknowledged."""
        topic = self.settings.pooul_topic_order_requests
        futures = [
            await self.producer.send(topic, orjson.dumps(p), key=p["mch_trade_id"].encode())
            for p in payloads
        ]
        await asyncio.gather(*futures)

    def reader(self, topic: str) -> TopicReader:
        if topic not in self._readers:
            self._readers[topic] = TopicReader(self.settings, topic)
        return self._readers[topic]

    async def results(self, count: int, *, within: float = 20.0) -> list[tuple[Received, Result]]:
        """The first `count` order results (waits for them; fails after `within` seconds)."""
        records = await self.reader(self.settings.pooul_topic_order_results).wait_for(
            count, within=within
        )
        return [(r, parse_order_result(r.value or b"")) for r in records]

    async def signals(self, count: int, *, within: float = 20.0) -> list[Received]:
        return await self.reader(self.settings.pooul_topic_trade_signals).wait_for(
            count, within=within
        )

    async def dead_letters(self, count: int, *, within: float = 20.0) -> list[Received]:
        return await self.reader(self.settings.pooul_topic_dead_letters).wait_for(
            count, within=within
        )

    async def platform_orders(self, mch_trade_id: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's orders of the test merchant (optionally one mch_trade_id)."""
        params = {"merchant_id": MERCHANT_ID}
        if mch_trade_id is not None:
            params["mch_trade_id"] = mch_trade_id
        async with self.http.get(f"{self.sandbox.url}/sandbox/orders", params=params) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        orders: list[dict[str, Any]] = body["orders"] if isinstance(body, dict) else body
        return orders

    async def pay_calls(self) -> dict[str, int]:
        """Answered codes of the sandbox's `pay` endpoint, e.g. {"0": 1, "107": 1}."""
        return await self._calls("pay")

    async def query_calls(self) -> dict[str, int]:
        """Answered codes of the sandbox's `query` endpoint."""
        return await self._calls("query")

    async def _calls(self, endpoint: str) -> dict[str, int]:
        async with self.http.get(f"{self.sandbox.url}/sandbox/stats") as resp:
            stats = await resp.json()
        calls: dict[str, int] = stats["calls"].get(endpoint, {})
        return calls

    async def faults(self, **config: Any) -> None:
        async with self.http.put(f"{self.sandbox.url}/sandbox/faults", json=config) as resp:
            assert resp.status == 200, await resp.text()

    async def close(self) -> None:
        for reader in self._readers.values():
            await reader.close()
        await self.producer.stop()
        await self.http.close()


class TopicReader:
    """Reads a whole topic from the beginning (every partition, no consumer group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self.records: list[Received] = []

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = make_consumer(self._settings, auto_offset_reset="earliest")
            await consumer.start()
            partitions = range(self._settings.pooul_topic_partitions)
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._consumer = consumer
        return self._consumer

    async def poll(self, timeout_ms: int = 100) -> None:
        consumer = await self._ensure()
        batch = await consumer.getmany(timeout_ms=timeout_ms)
        for messages in batch.values():
            for m in messages:
                self.records.append(
                    Received(
                        key=m.key,
                        value=m.value,
                        headers=dict(m.headers or ()),
                        partition=m.partition,
                        offset=m.offset,
                    )
                )

    async def wait_for(self, count: int, *, within: float) -> list[Received]:
        """At least `count` records (TimeoutError after `within` s); returns all read so far."""
        async with asyncio.timeout(within):
            while len(self.records) < count:
                await self.poll()
        return list(self.records)

    async def settle(self, quiet: float = 0.5) -> list[Received]:
        """Read until nothing new arrives for `quiet` seconds (to prove nothing extra came)."""
        while True:
            before = len(self.records)
            await self.poll(timeout_ms=int(quiet * 1000))
            if len(self.records) == before:
                return list(self.records)

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    make_settings: SettingsFactory, make_sandbox: Callable[..., Awaitable[SandboxServer]]
) -> AsyncIterator[RigFactory]:
    """Factory: `await make_rig(sandbox_settings=..., **settings_overrides)`."""
    rigs: list[Rig] = []

    async def factory(*, sandbox_kwargs: dict[str, Any] | None = None, **overrides: Any) -> Rig:
        sandbox = await make_sandbox(**(sandbox_kwargs or {}))
        settings = await make_settings(
            **{
                **FAST_RUNTIME,
                "pooul_base_url": sandbox.url,
                "pooul_orders_group_id": f"orders-{uuid.uuid4().hex[:10]}",
                **overrides,
            }
        )
        producer = make_producer(settings)
        await producer.start()
        rig = Rig(
            settings=settings, sandbox=sandbox, producer=producer, http=aiohttp.ClientSession()
        )
        rigs.append(rig)
        return rig

    yield factory
    for rig in rigs:
        with contextlib.suppress(Exception):
            await rig.close()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value (0 when absent)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def running_orders(settings: Settings) -> AsyncIterator[CollectorRegistry]:
    """The orders worker in this process until the block ends; yields its metrics registry."""
    registry = CollectorRegistry()
    async with orders_processor(settings, registry=registry) as processor, processor:
        task = asyncio.create_task(processor.run())
        try:
            yield registry
        finally:
            await processor.stop()
            await task
