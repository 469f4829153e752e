"""Reading trades from the trades worker's state changelog, for operators (read-only).

    found = await find_trades(settings, phase=Phase.FLAGGED)     # every partition
    found = await find_trades(settings, trade_id="P1234")        # the trade's partition only

The changelog is compacted and co-partitioned with trade-signals: the last entry of a key is
the trade's state; a tombstone, or an entry whose expiry passed (the worker treats it as gone
and drops it soon), means no state. A lookup reads from the beginning up to the end as it was
at the start, with a group-less consumer (nothing is committed, the worker is not disturbed),
and keeps only the trades that match, so listing the flagged trades of a large store needs
memory for those alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.ingress.partitioner import partition_for
from worker.kafka import make_consumer
from worker.lag import high_watermarks
from worker.runtime.restore import RESTORE_CONSUMER_OPTIONS, caught_up
from worker.runtime.state import decode_entry
from worker.settings import Settings
from worker.trades.state import Phase, TradeRecord

__all__ = ["Lookup", "find_trades", "stored_trade"]


@dataclass
class Lookup:
    """The matching trades (oldest change first) and how many trades' latest entry could not be
    read (written by another release?)."""

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
        await consumer._client.force_metadata_update()  # `start()` may predate the topic
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
    beginnings = await consumer.beginning_offsets(tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    now = time.time()
    found: dict[bytes, TradeRecord] = {}
    unreadable: set[bytes] = set()
    remaining = {tp for tp in tps if ends[tp] > beginnings[tp]}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                if message.key is None or (key is not None and message.key != key):
                    continue
                try:
                    record = stored_trade(message.value, now)
                except ValueError:
                    unreadable.add(message.key)
                    found.pop(message.key, None)
                    continue
                unreadable.discard(message.key)
                if record is not None and (phase is None or record.phase is phase):
                    found[message.key] = record
                else:  # gone, or its latest state is not of `phase`
                    found.pop(message.key, None)
        for tp in list(remaining):
            if await caught_up(consumer, tp, ends[tp]):
                remaining.discard(tp)
    return Lookup(
        trades=sorted(found.values(), key=lambda record: record.updated_at),
        unreadable=len(unreadable),
    )


def stored_trade(value: bytes | None, now: float) -> TradeRecord | None:
    """The trade an entry holds; None for a tombstone or an expired entry; ValueError when
    this release cannot read it."""
    if value is None:
        return None
    entry = decode_entry(value)
    if entry.expires_at is not None and entry.expires_at <= now:
        return None
    return TradeRecord.from_json(entry.value)
