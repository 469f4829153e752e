"""Offset commits: each partition's lowest unfinished offset, only when it moved, bounded in time.

    committer = OffsetCommitter(name="trades", metrics=metrics)
    await committer.commit(consumer, runs)      # periodic, on revoke and on stop

Commits never overlap (a lock), so an older set of offsets cannot land after a newer one. A
failed or slow commit is logged and counted and left for the next one: records may be redone
after a crash, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker.runtime.aio import wait_for
from worker.runtime.metrics import RuntimeMetrics
from worker.runtime.partition import PartitionRun

__all__ = ["COMMIT_TIMEOUT", "OffsetCommitter"]

log = logging.getLogger(__name__)

# Bounded: with the coordinator unreachable aiokafka retries until closed, and a stop or a
# revoke must not wait for that.
COMMIT_TIMEOUT = 10.0


class OffsetCommitter:
    """Commits for one processor; `name` labels its metrics and log lines."""

    def __init__(self, *, name: str, metrics: RuntimeMetrics) -> None:
        self._name = name
        self._metrics = metrics
        self._lock = asyncio.Lock()

    async def commit(self, consumer: AIOKafkaConsumer | None, runs: Iterable[PartitionRun]) -> None:
        """Commit each run's committable offset that moved since its last commit."""
        if consumer is None:
            return
        async with self._lock:
            offsets: dict[TopicPartition, int] = {}
            pending: list[tuple[PartitionRun, int]] = []
            for run in runs:
                committable = run.offsets.committable
                if committable is not None and (
                    run.last_committed is None or committable > run.last_committed
                ):
                    offsets[run.tp] = committable
                    pending.append((run, committable))
            if not offsets:
                return
            try:
                await wait_for(consumer.commit(offsets), COMMIT_TIMEOUT)
            except (KafkaError, TimeoutError) as exc:
                self._metrics.commits.labels(self._name, "failed").inc()
                log.warning(
                    "offset commit failed; will retry (records may be redone, never skipped)",
                    extra={"worker": self._name, "error": repr(exc)},
                )
                return
            self._metrics.commits.labels(self._name, "ok").inc()
            for run, committed in pending:
                run.last_committed = committed
