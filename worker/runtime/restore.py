"""Rebuild partition state from the changelog: seek to the beginning, read to the end offset.

Runs with its own group-less consumer (`assign`, never `subscribe`) so it cannot disturb the
consumer group, with large fetch sizes because a restore reads whole partitions.

    result = await restore_partitions(consumer, topic="pooul.trade-state.v1", partitions=[0, 3])
    result.states[3].get(b"trade-1", now)

    await restore_runs(consumer, topic=..., runs=runs, owned=..., name="trades", metrics=metrics)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker.runtime.backoff import backoff_delay
from worker.runtime.metrics import RuntimeMetrics
from worker.runtime.partition import PartitionRun
from worker.runtime.state import PartitionState, StateEntry, Stored, restored_entry

__all__ = [
    "RESTORE_CONSUMER_OPTIONS",
    "RestoreResult",
    "caught_up",
    "restore_partitions",
    "restore_runs",
]

log = logging.getLogger(__name__)

_RNG = random.Random()  # jitter of the retry backoff

# A restore reads whole partitions: ask for a lot per request.
RESTORE_CONSUMER_OPTIONS: dict[str, Any] = {
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_poll_records": 100_000,
    "fetch_max_wait_ms": 100,
}


@dataclass
class RestoreResult:
    states: dict[int, PartitionState]
    records: int = 0
    bytes: int = 0
    corrupt: int = 0
    seconds: float = 0.0

    @property
    def keys(self) -> int:
        return sum(len(s) for s in self.states.values())


async def restore_partitions(
    consumer: AIOKafkaConsumer, *, topic: str, partitions: Collection[int]
) -> RestoreResult:
    """Read the changelog partitions from their beginning to (at least) the end offsets at start.

    Nobody else writes to these partitions meanwhile: the previous owner finished (and flushed)
    before the rebalance handed them over.
    """
    started = time.perf_counter()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    entries: dict[int, dict[bytes, StateEntry | Stored]] = {p: {} for p in partitions}
    result = RestoreResult(states={})
    consumer.assign(tps)
    try:
        await consumer.seek_to_beginning(*tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                _apply(messages, entries[tp.partition], result, topic=topic)
            # Checked by position, not by the last record returned: the tail may be records
            # getmany never returns (transaction markers), and getmany may hand out part of a
            # fetched batch.
            for tp in list(remaining):
                if await caught_up(consumer, tp, ends[tp]):
                    remaining.discard(tp)
    finally:
        consumer.unsubscribe()
    result.states = {p: PartitionState(p, entries[p]) for p in partitions}
    result.seconds = time.perf_counter() - started
    return result


async def restore_runs(
    consumer: AIOKafkaConsumer,
    *,
    topic: str,
    runs: Sequence[PartitionRun],
    owned: Callable[[PartitionRun], bool],
    name: str,
    metrics: RuntimeMetrics,
) -> None:
    """Restore the runs' partitions, retrying broker trouble with backoff for as long as it
    takes (a revoke or a stop cancels it), then hand each run still `owned` its state and mark
    it ready. Anything else it raises is for the caller to treat as fatal."""
    failures = 0
    while True:
        try:
            result = await restore_partitions(
                consumer, topic=topic, partitions=[r.partition for r in runs]
            )
            break
        except (KafkaError, TimeoutError, OSError) as exc:
            failures += 1
            log.warning(
                "state restore failed; retrying", extra={"worker": name, "error": repr(exc)}
            )
            await asyncio.sleep(backoff_delay(failures, base=0.2, maximum=10.0, rng=_RNG))
    now = time.monotonic()
    for run in runs:
        if owned(run):
            run.state = result.states[run.partition]
            run.ready = True
            run.progress_at = now
    metrics.restore_seconds.labels(name).observe(result.seconds)
    metrics.restore_records.labels(name).inc(result.records)
    metrics.restore_bytes.labels(name).inc(result.bytes)
    log.info(
        "state restored",
        extra={
            "worker": name,
            "partitions": [r.partition for r in runs],
            "keys": result.keys,
            "records": result.records,
            "bytes": result.bytes,
            "corrupt": result.corrupt,
            "seconds": round(result.seconds, 3),
        },
    )


async def caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    """The position reached both `end` (an end offset taken at the start) and the last fetch's
    high watermark. No cut at the end offset: the Tansu test broker reports the end of a
    multi-record batch as its base offset + 1, its fetch high watermark is right. (A restore
    reads partitions nobody writes meanwhile; a reader of live partitions also waits for what
    arrived while it read.)"""
    highwater: int | None = consumer.highwater(tp)
    position: int = await consumer.position(tp)
    return position >= max(end, highwater or 0)


def _apply(
    messages: list[Any],
    target: dict[bytes, StateEntry | Stored],
    result: RestoreResult,
    *,
    topic: str,
) -> None:
    """Fold changelog records into `target` (the hot loop of a restore: locals only)."""
    size = 0
    corrupt = 0
    store = restored_entry
    for message in messages:
        key, value = message.key, message.value
        if key is None:
            corrupt += 1
        elif value is None:
            target.pop(key, None)
        else:
            size += len(value)
            try:
                target[key] = store(value)
            except ValueError as exc:
                corrupt += 1
                target.pop(key, None)
                log.error(
                    "corrupt changelog record skipped; the key restores as absent",
                    extra={
                        "topic": topic,
                        "partition": message.partition,
                        "offset": message.offset,
                        "error": str(exc),
                    },
                )
    result.records += len(messages)
    result.bytes += size
    result.corrupt += corrupt
