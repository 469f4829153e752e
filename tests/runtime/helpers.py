"""Shared helpers of the runtime tests: fast timings, producing, reading topics, waiting."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from worker.kafka import make_consumer, make_producer
from worker.runtime import KeyContext, Record
from worker.settings import Settings

# Against an external broker (real Apache Kafka) the session timeout cannot go below the
# broker's group.min.session.timeout.ms (6 s by default); Tansu accepts 1 s.
_EXTERNAL = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

# Small time scales so rebalances, retries and commits happen in tens of milliseconds.
FAST: dict[str, Any] = {
    "pooul_session_timeout": 6.0 if _EXTERNAL else 1.0,
    "pooul_heartbeat_interval": 0.5 if _EXTERNAL else 0.1,
    "pooul_commit_interval": 0.05,
    "pooul_retry_backoff_base": 0.01,
    "pooul_retry_backoff_max": 0.05,
    "pooul_stall_timeout": 30.0,
    "pooul_shutdown_grace": 2.0,
    "pooul_revoke_grace": 1.0,
    "pooul_circuit_open_seconds": 0.3,
    "pooul_circuit_open_max_seconds": 0.6,
    "pooul_worker_host": "127.0.0.1",
    "pooul_worker_port": 0,
}


async def produce(
    settings: Settings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    headers: Sequence[tuple[str, bytes]] = (),
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Write records (acks=all) and return their (partition, offset)."""
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, value, key=key, headers=list(headers) or None, partition=partition
            )
            for key, value in records
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` (at least up to its current end), in partition then offset order."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=500)
                out.extend(batch.get(tp, []))
        return out
    finally:
        await consumer.stop()


async def committed_offsets(settings: Settings, group_id: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets as the broker stores them (not the processor's memory)."""
    consumer: AIOKafkaConsumer = make_consumer(settings, group_id=group_id)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()


def gid(settings: Settings, name: str) -> str:
    """A consumer group unique to the test (its topics' suffix), safe on a shared broker."""
    return f"{name}.{settings.pooul_topic_dead_letters.rsplit('.', 1)[-1]}"


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 20.0, what: str = "condition"
) -> None:
    """Poll `predicate` every 20 ms; fail the test with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


class NoTimers:
    """Mixin for handlers that never set timers."""

    async def on_timer(self, ctx: KeyContext) -> None:
        raise AssertionError(f"unexpected timer for {ctx.key!r}")


def key_of(record: Record) -> bytes:
    assert record.key is not None
    return record.key
