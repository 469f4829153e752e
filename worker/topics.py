"""Create and describe the project's topics.

`create_topics` is idempotent: an existing topic is fine (its partition count is checked, since
trade-state must stay co-partitioned with trade-signals and order-state with order-requests).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from worker.kafka import make_admin, make_consumer
from worker.lag import high_watermarks
from worker.settings import Settings

__all__ = ["TopicInfo", "TopicSpec", "create_topics", "describe_topics", "topic_specs"]

_TOPIC_ALREADY_EXISTS = 36
_VISIBLE_WITHIN = 10.0  # seconds a created topic may take to show up in the metadata
_COMPACTED = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    end_offsets: dict[int, int]

    @property
    def records(self) -> int:
        return sum(self.end_offsets.values())


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic with its layout; changelogs are compacted and co-partitioned with their input.

    With three replicas or more, `min.insync.replicas` is 2: an acks=all write (the ingress's
    `success`, every event and state write) is then on at least two brokers, not on a leader
    alone (Kafka's default of 1) that could be lost with it, and one broker may still be down
    (a rolling restart). With two replicas that would stop every write while either broker is
    down, so the cluster's default is left alone there (docs/deploy.md: use three).
    """
    compacted = {settings.pooul_topic_trade_state, settings.pooul_topic_order_state}
    replicas = settings.pooul_topic_replication_factor
    durability = {"min.insync.replicas": "2"} if replicas >= 3 else {}
    return [
        TopicSpec(
            name=name,
            partitions=settings.pooul_topic_partitions,
            replication_factor=replicas,
            configs={**(_COMPACTED if name in compacted else {}), **durability},
        )
        for name in settings.topics().values()
    ]


async def create_topics(
    settings: Settings, *, visible_within: float = _VISIBLE_WITHIN
) -> dict[str, str]:
    """Create missing topics; returns topic → `created` | `exists`. Raises on any other error,
    or when a created topic is not in the cluster's metadata `visible_within` seconds later."""
    admin = make_admin(settings)
    await admin.start()
    try:
        specs = topic_specs(settings)
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs)
                for s in specs
            ]
        )
        outcome: dict[str, str] = {}
        failures = []
        for topic, code, message in (error[:3] for error in response.topic_errors):
            if code == 0:
                outcome[topic] = "created"
            elif code == _TOPIC_ALREADY_EXISTS:
                outcome[topic] = "exists"
            else:
                failures.append(f"{topic}: error {code} {message or ''}".strip())
        if failures:
            raise RuntimeError("could not create topics: " + "; ".join(failures))
    finally:
        await admin.close()
    await _check_partitions(settings, specs, visible_within)
    return outcome


async def _check_partitions(
    settings: Settings, specs: list[TopicSpec], visible_within: float
) -> None:
    """Every topic has its partition count. A topic just created can be missing from the
    metadata for a moment (brokers learn of it from the controller; seen on the embedded broker
    right after a restart), so missing topics are awaited up to `visible_within`; a wrong
    count fails at once."""
    deadline = time.monotonic() + visible_within
    while True:
        described = {info.name: info.partitions for info in await describe_topics(settings)}
        wrong = [
            f"{s.name} has {described[s.name]} partitions, expected {s.partitions}"
            for s in specs
            if s.name in described and described[s.name] != s.partitions
        ]
        if wrong:
            raise RuntimeError(
                "existing topics do not match POOUL_TOPIC_PARTITIONS (changelogs must stay "
                "co-partitioned with their input): " + "; ".join(wrong)
            )
        missing = [s.name for s in specs if s.name not in described]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"topics not in the cluster's metadata {visible_within:g} s after creation: "
                + ", ".join(missing)
            )
        await asyncio.sleep(0.2)


async def describe_topics(settings: Settings) -> list[TopicInfo]:
    """Partition count and end offsets of each of the project's topics that exists."""
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        infos = []
        for name in settings.topics().values():
            partitions = consumer.partitions_for_topic(name)
            if not partitions:
                continue
            tps = [TopicPartition(name, p) for p in sorted(partitions)]
            ends = await high_watermarks(consumer, tps)
            infos.append(TopicInfo(name, len(tps), {tp.partition: ends[tp] for tp in tps}))
        return infos
    finally:
        await consumer.stop()
