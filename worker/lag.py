"""Consumer-group lag on the project's topics: how far each group is behind the end offsets.

Lag is what the workers scale on (KEDA reads the same numbers), so `topics describe` shows it
next to the partitions. Committed offsets are fetched for explicit partitions: some brokers
(the embedded Tansu among them) do not answer the "all partitions of a group" form. End offsets
are checked against a fetch's high watermark, because Tansu 0.6 answers ListOffsets with the
last producer batch's base offset + 1 rather than the offset after its last record.

    groups = await consumer_group_lag(settings)
    print(render_group_lag(groups))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.kafka import make_admin, make_consumer
from worker.settings import Settings

__all__ = [
    "GroupLag",
    "PartitionLag",
    "consumer_group_lag",
    "high_watermarks",
    "print_group_lag",
    "render_group_lag",
]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition as one group sees it; `committed` is None before the group's first commit."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int
    committed: int | None

    @property
    def lag(self) -> int:
        """Records the group has still to process (from the log start when nothing is committed)."""
        position = self.start_offset if self.committed is None else self.committed
        return max(0, self.end_offset - max(position, self.start_offset))


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group with committed offsets on at least one of the project's topics."""

    group: str
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def lag_by_topic(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for p in self.partitions:
            totals[p.topic] = totals.get(p.topic, 0) + p.lag
        return totals


async def consumer_group_lag(
    settings: Settings, *, groups: Sequence[str] | None = None
) -> list[GroupLag]:
    """Lag of every consumer group (or of `groups`) on the project's topics, sorted by name.

    A group counts as reading a topic once it committed an offset on any of its partitions;
    groups that never committed on the project's topics are left out.
    """
    start, end = await _log_bounds(settings)
    if not end:
        return []
    admin = make_admin(settings)
    await admin.start()
    try:
        if groups is None:
            listed = await admin.list_consumer_groups()
            groups = sorted({str(entry[0]) for entry in listed})
        result = []
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group, partitions=sorted(end))
            topics = {tp.topic for tp, meta in committed.items() if meta.offset >= 0}
            if not topics:
                continue
            state, members = await _group_state(admin, group)
            partitions = tuple(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    start_offset=start[tp],
                    end_offset=end[tp],
                    committed=_committed(committed, tp),
                )
                for tp in sorted(end)
                if tp.topic in topics
            )
            result.append(GroupLag(group, state, members, partitions))
        return result
    finally:
        await admin.close()


def _committed(committed: dict[TopicPartition, object], tp: TopicPartition) -> int | None:
    meta = committed.get(tp)
    offset = getattr(meta, "offset", -1)
    return offset if isinstance(offset, int) and offset >= 0 else None


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], *, probe_seconds: float = 2.0
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition (changes `consumer`'s assignment).

    ListOffsets, then for each non-empty partition one fetch from just before that offset:
    the fetch response carries the broker's high watermark, which is right even where
    ListOffsets is not (the embedded Tansu broker counts batches there).
    """
    listed = dict(await consumer.end_offsets(tps))
    beginning = await consumer.beginning_offsets(tps)
    pending = {tp for tp in tps if listed[tp] > beginning[tp]}
    if not pending:
        return listed
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, listed[tp] - 1)
    deadline = time.monotonic() + probe_seconds
    while pending and time.monotonic() < deadline:
        await consumer.getmany(*pending, timeout_ms=100, max_records=1)
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                listed[tp] = max(listed[tp], highwater)
                pending.discard(tp)
    return listed


async def _log_bounds(
    settings: Settings,
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Beginning and end offsets of every partition of the project's existing topics."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(name, partition)
            for name in settings.topics().values()
            for partition in sorted(consumer.partitions_for_topic(name) or ())
        ]
        if not tps:
            return {}, {}
        start = await consumer.beginning_offsets(tps)
        end = await high_watermarks(consumer, tps)
        return dict(start), end
    finally:
        await consumer.stop()


async def _group_state(admin: AIOKafkaAdminClient, group: str) -> tuple[str, int]:
    """The group's state (`Stable`, `Empty`, ...) and member count; `unknown` if not described."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except Exception:  # a broker without DescribeGroups still has useful lag numbers
        return "unknown", 0
    for response in responses:
        for entry in response.groups:
            error_code, name, state = entry[0], entry[1], entry[2]
            if name == group and error_code == 0:
                return str(state), len(entry[5])
    return "unknown", 0


def render_group_lag(groups: Sequence[GroupLag]) -> str:
    """A table: one line per group and topic, then one per partition with its lag."""
    if not groups:
        return "no consumer group has committed offsets on these topics"
    lines = [f"{'group':28} {'topic':32} {'part':>4} {'end':>8} {'committed':>9} {'lag':>8}"]
    for group in groups:
        lines.append(
            f"{group.group:28} {'(' + group.state + ', ' + str(group.members) + ' members)':32} "
            f"{'':>4} {'':>8} {'':>9} {group.lag:>8}"
        )
        for p in group.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(
                f"{'':28} {p.topic:32} {p.partition:>4} {p.end_offset:>8} {committed:>9} {p.lag:>8}"
            )
    return "\n".join(lines)


def print_group_lag(settings: Settings) -> None:
    """`topics describe`'s lag section (synchronous, for the CLI)."""
    print()
    print(render_group_lag(asyncio.run(consumer_group_lag(settings))))
