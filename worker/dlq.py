"""Read and replay the dead-letter topic: the operator's side of "poison messages never vanish".

Listing reads the topic from the beginning up to the end offsets taken at the start, with no
consumer group. Replaying reads from its own consumer group's committed offsets (or from the
beginning), writes each matching record dead letter back to its source topic (or `to`) with the
original key, value and headers plus `pooul-replayed-from: <topic>/<partition>/<offset>`, and
commits the group's offsets only after those writes were acknowledged (acks=all). A second replay
therefore does not repeat the first one, unless `from_beginning`.

Timer dead letters (a key's timer that kept failing) are listed but never replayed: their value
is the key's state, and writing it to any topic would not re-run the timer. Nor are letters
whose original was too large to carry (`payload_omitted_bytes`): the original is on its source
topic at the letter's coordinates.

    letters = await list_dead_letters(settings, reason="invalid_signal", limit=50)
    outcome = await replay_dead_letters(settings, reason="error", dry_run=True)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from schemas.dead_letter import DeadLetter, parse_dead_letter
from worker.kafka import make_consumer, make_producer
from worker.lag import high_watermarks
from worker.settings import Settings

__all__ = [
    "REPLAYED_FROM_HEADER",
    "DeadLetterRow",
    "ReplayOutcome",
    "ReplayProgress",
    "list_dead_letters",
    "replay_dead_letters",
    "replay_group",
]

REPLAYED_FROM_HEADER = "pooul-replayed-from"
_COMMIT_EVERY = 500


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One record of the dead-letter topic; `letter` is None when it does not parse."""

    partition: int
    offset: int
    timestamp_ms: int
    letter: DeadLetter | None
    error: str = ""

    @property
    def position(self) -> str:
        return f"{self.partition}/{self.offset}"


@dataclass(slots=True)
class ReplayOutcome:
    """Counts of one replay; `replayed` lists (dead-letter position, target topic)."""

    group: str
    scanned: int = 0
    replayed: list[tuple[str, str]] = field(default_factory=list)
    filtered_out: int = 0
    timers_skipped: int = 0
    omitted_skipped: int = 0
    unparseable: int = 0
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Handed to the progress callback after each batch."""

    scanned: int
    total: int
    replayed: int


def replay_group(settings: Settings, reason: str | None) -> str:
    """The consumer group that remembers how far replays got: one cursor per reason filter."""
    base = settings.pooul_dlq_group_id
    return base if reason is None else f"{base}.reason.{reason}"


def _parse(partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> DeadLetterRow:
    if value is None:
        return DeadLetterRow(partition, offset, timestamp_ms, None, "null value")
    try:
        return DeadLetterRow(partition, offset, timestamp_ms, parse_dead_letter(value))
    except ValidationError as exc:
        return DeadLetterRow(partition, offset, timestamp_ms, None, f"not a DeadLetter: {exc}")


def _matches(row: DeadLetterRow, reason: str | None) -> bool:
    return reason is None or (row.letter is not None and row.letter.reason == reason)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic} does not exist (pooul-worker topics create)")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def _batches(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> AsyncIterator[tuple[list[DeadLetterRow], dict[TopicPartition, int]]]:
    """Read every partition from `start` to `end` (exclusive, the end taken before reading, so
    letters written meanwhile wait for the next run); yields rows and the positions reached."""
    pending = {tp for tp in tps if start[tp] < end[tp]}
    if consumer.assignment() != set(tps):
        consumer.assign(list(tps))
    for tp in pending:
        consumer.seek(tp, start[tp])
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=500)
        rows: list[DeadLetterRow] = []
        positions: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            for record in records:
                if record.offset >= end[tp]:
                    break
                rows.append(_parse(tp.partition, record.offset, record.timestamp, record.value))
                positions[tp] = record.offset + 1
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
                positions[tp] = end[tp]
        yield rows, positions


async def list_dead_letters(
    settings: Settings, *, reason: str | None = None, limit: int | None = None
) -> list[DeadLetterRow]:
    """The dead letters now on the topic (matching `reason`), oldest first; `limit` keeps the newest."""
    topic = settings.pooul_topic_dead_letters
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        start = await consumer.beginning_offsets(tps)
        end = await high_watermarks(consumer, tps)
        rows = [
            row
            async for batch, _ in _batches(consumer, tps, start, end)
            for row in batch
            if _matches(row, reason)
        ]
    finally:
        await consumer.stop()
    rows.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return rows[-limit:] if limit is not None else rows


async def replay_dead_letters(
    settings: Settings,
    *,
    to: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    from_beginning: bool = False,
    group: str | None = None,
    progress: Callable[[ReplayProgress], None] | None = None,
) -> ReplayOutcome:
    """Replay record dead letters (matching `reason`) to their source topic or `to`.

    Writes are acknowledged before the group's offsets move (every few hundred letters and at
    the end); a crash mid-run replays the unacknowledged tail again next time (at least once,
    recognisable by the same `pooul-replayed-from`). `dry_run` writes and commits nothing.
    """
    topic = settings.pooul_topic_dead_letters
    group_id = group or replay_group(settings, reason)
    outcome = ReplayOutcome(group=group_id, dry_run=dry_run)
    consumer = make_consumer(settings, group_id=group_id)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        tps = await _partitions(consumer, topic)
        if to == topic:
            raise ValueError("replaying dead letters onto the dead-letter topic would loop")
        if to is not None:
            await _partitions(consumer, to)
        beginning = await consumer.beginning_offsets(tps)
        end = await _high_watermarks(settings, tps)
        start = dict(beginning)
        if not from_beginning:
            consumer.assign(list(tps))
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is not None and committed >= 0:
                    start[tp] = max(committed, beginning[tp])
        total = sum(max(0, end[tp] - start[tp]) for tp in tps)
        deliveries: list[asyncio.Future[object]] = []
        reached: dict[TopicPartition, int] = {}
        async for rows, positions in _batches(consumer, tps, start, end):
            for row in rows:
                outcome.scanned += 1
                target = _replay_target(row, outcome, reason=reason, to=to)
                if target is None:
                    continue
                outcome.replayed.append((row.position, target))
                if not dry_run:
                    deliveries.append(await _send(producer, row, target=target, dlq_topic=topic))
            reached.update(positions)
            if len(deliveries) >= _COMMIT_EVERY:
                await _acknowledge_and_commit(consumer, deliveries, reached, dry_run=dry_run)
            if progress is not None:
                progress(ReplayProgress(outcome.scanned, total, len(outcome.replayed)))
        await _acknowledge_and_commit(consumer, deliveries, reached, dry_run=dry_run)
    finally:
        await producer.stop()
        await consumer.stop()
    return outcome


async def _high_watermarks(
    settings: Settings, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """Probe with a group-less consumer: re-assigning a group member races its coordinator."""
    probe = make_consumer(settings)
    await probe.start()
    try:
        return await high_watermarks(probe, tps)
    finally:
        await probe.stop()


def _replay_target(
    row: DeadLetterRow, outcome: ReplayOutcome, *, reason: str | None, to: str | None
) -> str | None:
    """Where the row goes, or None (counted in `outcome`) when it is not replayed."""
    if row.letter is None:
        outcome.unparseable += 1
        return None
    if not _matches(row, reason):
        outcome.filtered_out += 1
        return None
    if row.letter.kind == "timer":
        outcome.timers_skipped += 1
        return None
    if row.letter.payload_omitted_bytes is not None:
        # The original was too large to carry: replaying the letter would write an empty
        # record. It is still on its source topic (within retention) at the coordinates.
        outcome.omitted_skipped += 1
        return None
    return to or row.letter.source_topic


async def _acknowledge_and_commit(
    consumer: AIOKafkaConsumer,
    deliveries: list[asyncio.Future[object]],
    reached: dict[TopicPartition, int],
    *,
    dry_run: bool,
) -> None:
    """Wait for every write's acknowledgement, then commit the positions reached."""
    if deliveries:
        await asyncio.gather(*deliveries)
        deliveries.clear()
    if reached and not dry_run:
        await consumer.commit(dict(reached))
    reached.clear()


async def _send(
    producer: AIOKafkaProducer, row: DeadLetterRow, *, target: str, dlq_topic: str
) -> asyncio.Future[object]:
    """Queue the original record for `target`; the returned future resolves on acknowledgement."""
    letter = row.letter
    assert letter is not None
    headers = [
        *letter.original_headers(),
        (REPLAYED_FROM_HEADER, f"{dlq_topic}/{row.partition}/{row.offset}".encode()),
    ]
    delivery: asyncio.Future[object] = await producer.send(
        target,
        None if letter.value is None else letter.value.to_bytes(),
        key=None if letter.key is None else letter.key.to_bytes(),
        headers=headers,
    )
    return delivery
