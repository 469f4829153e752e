"""Consumer-group lag on the project's topics, read from a real broker."""

from __future__ import annotations

import uuid

from aiokafka import TopicPartition

from worker.kafka import make_consumer, make_producer
from worker.lag import PartitionLag, consumer_group_lag, render_group_lag


async def test_lag_is_end_offset_minus_committed_per_partition(settings) -> None:
    """A group that committed part of a topic shows exactly the uncommitted records as lag."""
    topic = settings.pooul_topic_trade_signals
    producer = make_producer(settings)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 3)):
            for i in range(count):
                await producer.send_and_wait(topic, b"v", key=f"k{i}".encode(), partition=partition)
    finally:
        await producer.stop()

    group = f"lag-test-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 3})
    finally:
        await consumer.stop()

    [lag] = await consumer_group_lag(settings, groups=[group, f"{group}-never-committed"])
    assert lag.group == group
    by_partition = {p.partition: p for p in lag.partitions if p.topic == topic}
    assert by_partition[0].committed == 2 and by_partition[0].end_offset == 5
    assert by_partition[0].lag == 3
    assert by_partition[1].lag == 0
    assert by_partition[2].committed is None and by_partition[2].lag == 0
    assert lag.lag_by_topic()[topic] == 3
    assert lag.lag == 3
    table = render_group_lag([lag])
    assert group in table and topic in table


async def test_groups_are_discovered_without_naming_them(settings) -> None:
    """Without a group list, every group that committed on the project's topics is reported."""
    topic = settings.pooul_topic_payment_events
    group = f"lag-discover-{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"v", key=b"k", partition=0)
    finally:
        await producer.stop()
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 0})
    finally:
        await consumer.stop()

    groups = {g.group: g for g in await consumer_group_lag(settings)}
    assert group in groups
    assert groups[group].lag_by_topic() == {topic: 1}


async def test_lag_counts_records_of_batched_writes(make_settings) -> None:
    """Records sent in one producer batch each count as lag (not one per batch)."""
    settings = await make_settings(kafka_linger_ms=50)
    topic = settings.pooul_topic_order_requests
    producer = make_producer(settings)
    await producer.start()
    try:
        deliveries = [await producer.send(topic, b"v", key=b"k", partition=2) for _ in range(6)]
        for delivery in deliveries:
            await delivery
    finally:
        await producer.stop()
    group = f"lag-batch-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 2)])
        await consumer.commit({TopicPartition(topic, 2): 1})
    finally:
        await consumer.stop()
    [lag] = await consumer_group_lag(settings, groups=[group])
    assert lag.lag_by_topic() == {topic: 5}


def test_partition_lag_never_counts_records_before_the_log_start() -> None:
    """A committed offset behind a truncated log counts from the log start, never negative."""
    assert PartitionLag("t", 0, start_offset=10, end_offset=15, committed=4).lag == 5
    assert PartitionLag("t", 0, start_offset=0, end_offset=15, committed=20).lag == 0
    assert PartitionLag("t", 0, start_offset=3, end_offset=7, committed=None).lag == 4
    assert render_group_lag([]) == "no consumer group has committed offsets on these topics"
