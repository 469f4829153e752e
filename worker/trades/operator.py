"""Operator actions on one trade: write a recheck or resolve signal, then watch what the trades
worker makes of it.

    outcome = await act_on_trade(settings, RecheckSignal(trade_id=..., requested_by="alice",
                                                         requested_at=datetime.now(UTC)), wait=10)
    outcome.record    # the trade's state as the worker wrote it after the signal, or None

The signal goes to the trade's partition of the trade-signals topic like any other (key =
`trade_id`, acks=all), so the worker handles it in order with the trade's other signals. The
worker's answer is the trade's entry on the state changelog (co-partitioned: the same
partition number, read from its end as it was just before the signal was written) that names
this very signal (`action_stamp`): other writes for the trade meanwhile are not taken for it.
A signal the worker writes no state for (an unknown trade, a resolve of a trade not flagged, a
recheck it refuses or the platform answers "not found") shows as no record within `wait`; the
worker's log line "operator signal" and `pooul_trades_operator_signals_total` say which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.signals import KIND_HEADER, OperatorSignal
from worker.ingress.partitioner import partition_for
from worker.kafka import make_consumer, make_producer
from worker.lag import high_watermarks
from worker.settings import Settings
from worker.trades.lookup import stored_trade
from worker.trades.state import TradeRecord, action_stamp

__all__ = ["ActionOutcome", "act_on_trade"]


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """Where the signal was written, and the trade's state entry written after it (or None)."""

    partition: int
    offset: int
    record: TradeRecord | None


async def act_on_trade(settings: Settings, signal: OperatorSignal, *, wait: float) -> ActionOutcome:
    """Write `signal`; for up to `wait` seconds, watch the trade's state entry change."""
    key = signal.trade_id.encode()
    signals_topic = settings.pooul_topic_trade_signals
    producer = make_producer(settings)
    consumer = make_consumer(settings)
    await producer.start()
    try:
        await consumer.start()
        try:
            partitions = await producer.partitions_for(signals_topic)
            if not partitions:
                raise LookupError(f"topic {signals_topic} does not exist")
            partition = partition_for(key, partitions)
            changelog = TopicPartition(settings.pooul_topic_trade_state, partition)
            end = (await high_watermarks(consumer, [changelog]))[changelog]
            consumer.assign([changelog])
            consumer.seek(changelog, end)
            written = await producer.send_and_wait(
                signals_topic,
                signal.model_dump_json().encode(),
                key=key,
                partition=partition,
                headers=[(KIND_HEADER, signal.kind.encode())],
            )
            stamp = action_stamp(signal)
            record = await _entry_for(consumer, changelog, key, stamp, wait) if wait > 0 else None
            return ActionOutcome(partition, written.offset, record)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def _entry_for(
    consumer: AIOKafkaConsumer, changelog: TopicPartition, key: bytes, stamp: str, wait: float
) -> TradeRecord | None:
    """The first entry for `key` naming the signal `stamp` from the consumer's position, within
    `wait` seconds."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        batches = await consumer.getmany(changelog, timeout_ms=int(min(left, 0.5) * 1000))
        for message in batches.get(changelog, []):
            if message.key != key:
                continue
            try:
                record = stored_trade(message.value, time.time())
            except ValueError:
                continue  # not an entry this release reads: keep watching
            if record is not None and record.operator_action == stamp:
                return record
    return None
