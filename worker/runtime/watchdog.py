"""Honest liveness: notice a partition that has work but makes no progress.

A consumer can stay connected (heartbeats fine) and yet stop consuming — a known aiokafka
failure mode. Heartbeats therefore prove nothing; progress does. Per owned, restored partition
the watchdog compares, every tick, the fetch position and the number of finished records with
the previous tick. A partition is stalled when it has pending work (unfinished records, or
records on the broker past the fetch position) and neither moved for POOUL_STALL_TIMEOUT, or
when one handler call has been running that long. While the circuit breaker is open the
standstill is deliberate and excused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker.runtime.aio import wait_for
from worker.runtime.partition import PartitionRun

__all__ = ["Watchdog", "assess", "fetch_position", "known_highwater"]

log = logging.getLogger(__name__)


def fetch_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's fetch position without waiting (None while unknown).

    Raises LookupError when the partition is not assigned (a rebalance is under way).
    `AIOKafkaConsumer.position()` would block until a position exists, so this reads the
    subscription state it reads.
    """
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None or tp not in assignment.tps:
        raise LookupError(f"{tp} is not assigned")
    state = assignment.state_value(tp)
    return int(state.position) if state.has_valid_position else None


def known_highwater(consumer: AIOKafkaConsumer | None, run: PartitionRun) -> int | None:
    """The highest end offset seen: from fetch responses or the watchdog's end_offsets."""
    fetched: int | None = None
    if consumer is not None:
        try:
            value = consumer.highwater(run.tp)
        except AssertionError:  # not assigned any more
            value = None
        fetched = None if value is None else int(value)
    candidates = [v for v in (fetched, run.highwater) if v is not None]
    return max(candidates) if candidates else None


def assess(
    run: PartitionRun,
    *,
    position: int | None,
    end: int | None,
    now: float,
    timeout: float,
    excused: bool,
) -> str | None:
    """Update `run`'s progress bookkeeping; return why it is stalled, or None."""
    marker = (position, run.offsets.finished_total)
    if marker != run.progress_marker or excused:
        run.progress_marker = marker
        run.progress_at = now
    fetched_to = run.offsets.next_offset if position is None else position
    pending = run.offsets.unfinished > 0 or (
        end is not None and fetched_to is not None and end > fetched_to
    )
    if pending and now - run.progress_at > timeout:
        return (
            f"partition {run.partition}: no progress for {now - run.progress_at:.0f}s with "
            f"pending records (unfinished={run.offsets.unfinished}, position={position}, end={end})"
        )
    longest = max((now - started for started in run.in_handler.values()), default=0.0)
    if longest > timeout and not excused:
        return f"partition {run.partition}: a handler call has run for {longest:.0f}s"
    return None


class Watchdog:
    """The periodic check; results land in each run's `stall_reason` (read by /healthz)."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        runs: Callable[[], list[PartitionRun]],
        excused: Callable[[], bool],
        timeout: float,
        name: str,
    ) -> None:
        self._consumer = consumer
        self._runs = runs
        self._excused = excused
        self._timeout = timeout
        self._name = name
        self.tick = min(5.0, max(0.05, timeout / 4))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.check()

    async def check(self) -> None:
        runs = [r for r in self._runs() if r.ready and r.active()]
        ends: dict[TopicPartition, int] = {}
        if runs:
            try:
                ends = await wait_for(
                    self._consumer.end_offsets([r.tp for r in runs]), self.tick * 2 + 1
                )
            except (KafkaError, TimeoutError, AssertionError) as exc:
                log.debug(
                    "end offsets unavailable", extra={"worker": self._name, "error": repr(exc)}
                )
        now = time.monotonic()
        excused = self._excused()
        for run in runs:
            if not run.active():
                continue
            try:
                position = fetch_position(self._consumer, run.tp)
            except LookupError:
                continue
            end = ends.get(run.tp)
            highwater = known_highwater(self._consumer, run)
            run.highwater = max((v for v in (end, highwater) if v is not None), default=None)
            reason = assess(
                run,
                position=position,
                end=run.highwater,
                now=now,
                timeout=self._timeout,
                excused=excused,
            )
            if reason is not None and run.stall_reason is None:
                log.error("partition stalled", extra={"worker": self._name, "reason": reason})
            run.stall_reason = reason
