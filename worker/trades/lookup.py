"""Reading trades from the trades worker's state changelog, for operators (read-only).

    found = await find_trades(settings, phase=Phase.FLAGGED)     # every partition
    found = await find_trades(settings, trade_id="P1234")        # the trade's partition only

The changelog is compacted and co-partitioned with trade-signals: the last entry of a key is
the trade's state, a tombstone means it was dropped. A lookup reads from the beginning up to
the high watermark as it was at the start, with a group-less consumer (nothing is committed,
the worker is not disturbed), and keeps only the trades that match, so listing the flagged
trades of a large store needs memory for those alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.ingress.partitioner import partition_for
from worker.kafka import make_consumer
from worker.lag import high_watermarks
from worker.runtime.restore import RESTORE_CONSUMER_OPTIONS
from worker.runtime.state import decode_entry
from worker.settings import Settings
from worker.trades.state import Phase, TradeRecord

__all__ = ["Lookup", "find_trades"]


@dataclass
class Lookup:
    """The matching trades (oldest change first) and how many entries could not be read."""

    trades: list[TradeRecord] = field(default_factory=list)
    unreadable: int = 0


async def find_trades(
    settings: Settings, *, phase: Phase | None = None, trade_id: str | None = None
) -> Lookup:
    """The trades on the changelog now, optionally of one `phase` or one `trade_id`."""
    topic = settings.pooul_topic_trade_state
    consumer = make_consumer(settings, **RESTORE_CONSUMER_OPTIONS)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist (pooul-worker topics create)")
        key = None if trade_id is None else trade_id.encode()
        # Co-partitioned with trade-signals: a trade's entry is on its signals' partition.
        chosen = sorted(partitions) if key is None else [partition_for(key, partitions)]
        tps = [TopicPartition(topic, p) for p in chosen]
        ends = await high_watermarks(consumer, tps)
        return await _read(consumer, ends, phase=phase, key=key)
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    *,
    phase: Phase | None,
    key: bytes | None,
) -> Lookup:
    tps = sorted(ends, key=lambda tp: tp.partition)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    found: dict[bytes, TradeRecord] = {}
    lookup = Lookup()
    remaining = {tp for tp in tps if ends[tp] > 0}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                if message.key is None or (key is not None and message.key != key):
                    continue
                record = _record(message.value)
                if record is None and message.value is not None:
                    lookup.unreadable += 1
                if record is not None and (phase is None or record.phase is phase):
                    found[message.key] = record
                else:  # dropped, unreadable, or its latest state is not of `phase`
                    found.pop(message.key, None)
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    lookup.trades = sorted(found.values(), key=lambda record: record.updated_at)
    return lookup


def _record(value: bytes | None) -> TradeRecord | None:
    if value is None:
        return None
    try:
        return TradeRecord.from_json(decode_entry(value).value)
    except ValueError:
        return None
