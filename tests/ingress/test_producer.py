"""SignalPublisher against a real broker: acknowledged writes, lifecycle, and batches nobody waits
for any more are dropped instead of written late."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.broker import base_settings
from tests.ingress.conftest import restart_broker, stop_broker
from tests.ingress.helpers import topic_records
from worker.ingress.errors import PublishError, PublishTimeout
from worker.ingress.metrics import IngressMetrics
from worker.ingress.notify import SignalRecord
from worker.ingress.producer import SignalPublisher
from worker.kafka import make_producer
from worker.settings import Settings
from worker.topics import create_topics


def _publisher(settings: Settings, *, ack_timeout: float = 2.0, **kwargs) -> SignalPublisher:
    return SignalPublisher(
        producer=make_producer(settings, linger_ms=0, request_timeout_ms=int(ack_timeout * 1000)),
        topic=settings.pooul_topic_trade_signals,
        ack_timeout=ack_timeout,
        metrics=IngressMetrics(),
        **kwargs,
    )


def _record(key: str) -> SignalRecord:
    return SignalRecord(
        key=key.encode(), value=b'{"k": "' + key.encode() + b'"}', headers=(("h", b"v"),)
    )


async def test_concurrent_publishes_are_all_acknowledged_and_written(settings):
    """Five hundred concurrent publishes (many per batch) each return only once written, keyed as
    given, with their headers."""
    async with _publisher(settings, linger=0.002) as publisher:
        await asyncio.gather(*(publisher.publish(_record(f"K{i}")) for i in range(500)))
        await publisher.flush()
    records = await topic_records(settings)
    assert sorted(r.key for r in records) == sorted(f"K{i}".encode() for i in range(500))
    assert all(r.headers == {"h": b"v"} for r in records)


async def test_lifecycle_rules(settings):
    """A second start is an error, stop twice is harmless, and publishing after stop is refused."""
    publisher = _publisher(settings)
    await publisher.start()
    with pytest.raises(RuntimeError):
        await publisher.start()
    await publisher.stop()
    await publisher.stop()
    with pytest.raises(PublishError):
        await publisher.publish(_record("late"))


async def test_a_batch_every_request_gave_up_on_is_dropped_not_sent(private_broker):
    """With the broker down, a record whose caller already gave up waits behind the batch in
    flight and is dropped (counted) when its turn comes instead of being sent; after recovery the
    topic holds only what was published then."""
    settings = base_settings(private_broker.bootstrap_servers, pooul_topic_partitions=1)
    await create_topics(settings)
    metrics = IngressMetrics()
    publisher = SignalPublisher(
        producer=make_producer(settings, linger_ms=0, request_timeout_ms=500),
        topic=settings.pooul_topic_trade_signals,
        ack_timeout=0.5,
        metrics=metrics,
    )
    async with publisher:
        await stop_broker(private_broker)
        first = asyncio.create_task(publisher.publish(_record("first")))
        await asyncio.sleep(0.05)  # the first batch is now on its way (and stuck)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await publisher.publish(_record("abandoned"))
        with pytest.raises(PublishTimeout):
            await first
        await publisher.flush()
        assert metrics.registry.get_sample_value("pooul_ingress_dropped_records_total") == 1
        await restart_broker(private_broker, settings)
        await publisher.publish(_record("after"))
    assert [r.key for r in await topic_records(settings)] == [b"after"]


async def test_every_unacknowledged_publish_fails_on_its_own_deadline_in_arrival_order(
    private_broker,
):
    """With the broker down, publishes started at different times each end with PublishTimeout
    (one shared timer serves all deadlines), in the order they started, and none hangs."""
    settings = base_settings(private_broker.bootstrap_servers, pooul_topic_partitions=2)
    await create_topics(settings)
    async with _publisher(settings, ack_timeout=0.4) as publisher:
        await publisher.publish(_record("before"))  # metadata known: the shared-deadline path
        await stop_broker(private_broker)
        finished: list[str] = []

        async def publish(key: str) -> BaseException | None:
            try:
                await publisher.publish(_record(key))
            except PublishError as exc:
                return exc
            finally:
                finished.append(key)
            return None

        tasks = []
        for key in ("a", "b", "c"):
            tasks.append(asyncio.create_task(publish(key)))
            await asyncio.sleep(0.1)
        async with asyncio.timeout(5):
            results = await asyncio.gather(*tasks)
    assert all(isinstance(result, PublishTimeout) for result in results), results
    assert finished == ["a", "b", "c"]
