"""Is the broker able to take a notify right now? The answer behind `GET /readyz`.

    watch = BrokerWatch(client=producer.client, topic=topic, interval=2.0, timeout=3.0)
    async with watch:
        watch.ready, watch.reason

Every `interval` seconds (and at once after a failed publish) the watch asks the cluster, through
the producer's own client, for fresh metadata of the trade-signals topic, and then makes sure the
producer holds a live connection to every partition leader. A stopped broker, an unknown topic or
a partition without a leader all make it not ready; nothing is cached from before the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

from aiokafka import TopicPartition
from aiokafka.cluster import ClusterMetadata

from worker.ingress.metrics import IngressMetrics

__all__ = ["BrokerWatch"]

log = logging.getLogger(__name__)


class BrokerWatch:
    """Probes broker reachability in the background.

    - `client`: the producer's `AIOKafkaClient` (so the probe tests the producer's connections).
    - `topic`: the topic notifies are written to.
    - `interval`: seconds between probes.
    - `timeout`: seconds one probe may take before it counts as a failure.
    - `metrics`: `pooul_ingress_broker_ready` follows the verdict.
    """

    def __init__(
        self,
        *,
        client: Any,
        topic: str,
        interval: float,
        timeout: float,
        metrics: IngressMetrics,
    ) -> None:
        self._client = client
        self._topic = topic
        self._interval = interval
        self._timeout = timeout
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.ready = False
        self.reason = "not started"

    async def start(self) -> None:
        """Probe once (so readiness is right from the first request), then keep probing."""
        if self._task is not None or self._stopped:
            raise RuntimeError("BrokerWatch already started")
        await self.probe()
        self._task = asyncio.create_task(self._run(), name="ingress-broker-watch")

    async def stop(self) -> None:
        self._stopped = True
        self.ready = False
        self.reason = "stopped"
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def poke(self) -> None:
        """Probe now instead of at the next interval (a publish just failed)."""
        self._wake.set()

    async def probe(self) -> bool:
        """One probe; updates `ready`/`reason` and the gauge, logs changes."""
        try:
            async with asyncio.timeout(self._timeout):
                reason = await self._check()
        except TimeoutError:
            reason = f"broker did not answer within {self._timeout:g} s"
        ready = reason is None
        if ready != self.ready:
            if ready:
                log.info("broker reachable", extra={"topic": self._topic})
            else:
                log.warning("broker not reachable", extra={"topic": self._topic, "reason": reason})
        self.ready = ready
        self.reason = reason or "ok"
        self._metrics.broker_ready.set(1 if ready else 0)
        return ready

    async def _check(self) -> str | None:
        """None when ready, else why not."""
        fresh = ClusterMetadata()
        if not await self._client._metadata_update(fresh, [self._topic]):
            return "no broker answered a metadata request"
        partitions = fresh.partitions_for_topic(self._topic)
        if not partitions:
            return f"topic {self._topic} is unknown to the cluster"
        leaders = {fresh.leader_for_partition(TopicPartition(self._topic, p)) for p in partitions}
        if None in leaders or -1 in leaders:
            return f"a partition of {self._topic} has no leader"
        for leader in sorted(leaders):
            if not await self._client.ready(leader):
                return f"no connection to leader {leader}"
        return None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.probe()
            except Exception:  # a probe bug must not silently freeze readiness
                log.exception("broker probe failed")
                self.ready = False
                self.reason = "probe error"
                self._metrics.broker_ready.set(0)

    async def __aenter__(self) -> BrokerWatch:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
