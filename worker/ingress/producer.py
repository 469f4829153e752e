"""Writing verified notifies to the trade-signals topic: acks=all, batched, under a deadline.

    async with SignalPublisher(producer=make_producer(settings, linger_ms=0), topic=...,
                               ack_timeout=3.0, linger=0.002, metrics=metrics) as publisher:
        await publisher.publish(record)     # returns only once every in-sync replica has it

One producer serves every request. Records are grouped per partition into aiokafka batch
builders (its public `create_batch`/`send_batch` API): while one batch of a partition is on its
way to the broker, the notifies arriving meanwhile fill the next one, so load grows batches, not
round trips, and the per-message bookkeeping of `send()` is paid once per batch. Each request
still waits for the acknowledgement of the batch holding its own record; `publish` returning is
the only thing that lets the handler answer `success`.

A batch whose every request has already given up (deadline passed, 503 answered) is dropped
before it is sent: the platform will deliver those notifies again, so writing them late would
only add duplicates.

Deadlines cost one timer for all requests, not one per request: every `publish` has the same
`ack_timeout`, so their deadlines come in arrival order and one timer at the oldest pending
deadline expires them in order. The topic's sorted partition list is cached and dropped on every
metadata update (the cluster's listener), instead of being rebuilt and sorted per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker.ingress.errors import PublishError, PublishTimeout
from worker.ingress.metrics import IngressMetrics
from worker.ingress.notify import SignalRecord
from worker.ingress.partitioner import partition_in

__all__ = ["SignalPublisher"]

log = logging.getLogger(__name__)

_TIMER_SLACK = 0.001  # seconds; the event loop's timers have millisecond resolution


class _Batch:
    """Records bound for one partition and the requests waiting for them."""

    __slots__ = ("builder", "waiters")

    def __init__(self, builder: Any) -> None:
        self.builder = builder  # aiokafka's BatchBuilder (untyped)
        self.waiters: list[asyncio.Future[None]] = []

    def add(self, record: SignalRecord, waiter: asyncio.Future[None]) -> bool:
        """False when the batch is full (nothing was added)."""
        added = self.builder.append(
            timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
        )
        if added is None:
            return False
        self.waiters.append(waiter)
        return True

    def abandoned(self) -> bool:
        return all(waiter.done() for waiter in self.waiters)

    def settle(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)


class SignalPublisher:
    """Owns the ingress producer.

    - `producer`: an unstarted acks=all producer (`worker.kafka.make_producer`) with
      `linger_ms=0`; lingering happens here, per partition.
    - `topic`: the trade-signals topic.
    - `ack_timeout`: seconds a `publish` may take, metadata wait and acknowledgement included.
    - `linger`: seconds the first record waits for company before the batches leave — all
      lingering partitions together, so they share one produce request (later records of a busy
      partition wait for its batch in flight anyway).
    - `metrics`: produce latency goes to `pooul_ingress_produce_seconds`.
    - `on_failure`: called after a failed or late publish (the broker watch re-probes at once).
    - `flush_timeout`: how long `stop()` waits for batches still queued or in flight.
    """

    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        topic: str,
        ack_timeout: float,
        metrics: IngressMetrics,
        linger: float = 0.0,
        on_failure: Callable[[], None] | None = None,
        flush_timeout: float = 5.0,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._ack_timeout = ack_timeout
        self._linger = linger
        self._metrics = metrics
        self._on_failure = on_failure
        self._flush_timeout = flush_timeout
        self._queues: dict[int, deque[_Batch]] = {}
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        # Partitions whose first batch waits for the shared linger timer.
        self._lingering: set[int] = set()
        self._linger_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # (deadline on the loop clock, waiter) in arrival order, so deadlines never decrease.
        self._deadlines: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        # The topic's partitions, sorted; None until known and after every metadata update.
        self._partitions: tuple[int, ...] | None = None
        self._started = False
        self._stopped = False

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        """Connect (raises aiokafka's `KafkaConnectionError` when no bootstrap server answers)."""
        if self._started:
            raise RuntimeError("SignalPublisher already started")
        self._started = True
        self._producer.client.cluster.add_listener(self._metadata_updated)
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()
            raise

    async def flush(self) -> None:
        """Wait until every queued batch was acknowledged, failed or dropped."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Send what is queued (bounded by `flush_timeout`), then close; twice is harmless."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        try:
            async with asyncio.timeout(self._flush_timeout):
                await self._idle.wait()
        except TimeoutError:
            # Only records whose requests already got 503 can be left: their notifies come again.
            left = sum(len(b.waiters) for q in self._queues.values() for b in q)
            log.warning(
                "producer flush timed out; unacknowledged records are dropped",
                extra={"flush_timeout": self._flush_timeout, "queued_records": left},
            )
            for task in list(self._in_flight.values()):
                task.cancel()
            for queue in self._queues.values():
                for batch in queue:
                    batch.settle(PublishError("ingress stopped before the broker answered"))
            self._queues.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._producer.client.cluster.remove_listener(self._metadata_updated)
        try:
            async with asyncio.timeout(self._flush_timeout):
                await self._producer.stop()
        except TimeoutError:
            log.warning("producer did not close in time", extra={"timeout": self._flush_timeout})

    async def publish(self, record: SignalRecord) -> None:
        """Write one record and wait for its acks=all acknowledgement, or raise `PublishError`."""
        if self._stopped:
            raise PublishError("ingress is stopping")
        started = time.perf_counter()
        try:
            partitions = self._partitions or self._known_partitions()
            if partitions:
                waiter = self._enqueue(partition_in(record.key, partitions), record)
                self._expire_at(asyncio.get_running_loop().time() + self._ack_timeout, waiter)
                await waiter
            else:  # unknown yet (or the topic is gone): wait for metadata, same deadline
                async with asyncio.timeout(self._ack_timeout):
                    found = await self._producer.partitions_for(self._topic)
                    await self._enqueue(partition_in(record.key, sorted(found)), record)
        except TimeoutError:
            self._failed()
            raise self._timeout_error() from None
        except KafkaError as exc:
            self._failed()
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        except PublishError:
            self._failed()
            raise
        self._metrics.produce_seconds.observe(time.perf_counter() - started)

    def _known_partitions(self) -> tuple[int, ...] | None:
        found = self._producer.client.cluster.partitions_for_topic(self._topic)
        if not found:
            return None
        self._partitions = tuple(sorted(found))
        return self._partitions

    def _metadata_updated(self, cluster: Any) -> None:
        self._partitions = None  # partitions may have been added: look again on the next record

    def _timeout_error(self) -> PublishTimeout:
        return PublishTimeout(
            f"no acknowledgement within {self._ack_timeout:g} s from {self._topic}"
        )

    def _expire_at(self, deadline: float, waiter: asyncio.Future[None]) -> None:
        """Fail `waiter` with `PublishTimeout` at `deadline` unless it is settled before."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():  # acknowledged meanwhile: forget them
            deadlines.popleft()
        deadlines.append((deadline, waiter))
        if self._deadline_timer is None:
            self._deadline_timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        """The timer at the oldest pending deadline: fail what is due, re-arm for the next."""
        self._deadline_timer = None
        deadlines = self._deadlines
        loop = asyncio.get_running_loop()
        now = loop.time()
        while deadlines:
            deadline, waiter = deadlines[0]
            if not waiter.done():
                # A timer may fire up to a clock tick early: that close counts as due.
                if deadline > now + _TIMER_SLACK:
                    self._deadline_timer = loop.call_at(deadline, self._expire)
                    return
                waiter.set_exception(self._timeout_error())
            deadlines.popleft()

    def _enqueue(self, partition: int, record: SignalRecord) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = deque()
        if not queue or not queue[-1].add(record, waiter):
            batch = _Batch(self._producer.create_batch())
            batch.add(record, waiter)  # the first record always fits, whatever its size
            queue.append(batch)
            if len(queue) == 1 and partition not in self._in_flight:
                self._lingering.add(partition)
                if self._linger_handle is None:
                    loop = asyncio.get_running_loop()
                    self._linger_handle = (
                        loop.call_later(self._linger, self._end_linger)
                        if self._linger
                        else loop.call_soon(self._end_linger)
                    )
        return waiter

    def _end_linger(self) -> None:
        """Send every lingering partition's batch together: one produce request per broker."""
        self._linger_handle = None
        partitions, self._lingering = self._lingering, set()
        for partition in partitions:
            self._dispatch(partition)

    def _dispatch(self, partition: int) -> None:
        """Send the partition's oldest batch unless one is already on its way."""
        if partition in self._in_flight:
            return
        queue = self._queues.get(partition)
        while queue:
            batch = queue.popleft()
            if batch.abandoned():
                self._metrics.dropped_records.inc(len(batch.waiters))
                continue
            self._in_flight[partition] = asyncio.create_task(
                self._send(partition, batch), name=f"ingress-produce-{partition}"
            )
            return
        if not self._in_flight and not any(self._queues.values()):
            self._idle.set()

    async def _send(self, partition: int, batch: _Batch) -> None:
        error: BaseException | None = None
        try:
            delivery = await self._producer.send_batch(
                batch.builder, self._topic, partition=partition
            )
            await delivery
        except asyncio.CancelledError:
            error = PublishError("ingress stopped before the broker answered")
            raise
        except KafkaError as exc:
            error = PublishError(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # never leave a request waiting on a batch that failed oddly
            log.exception("produce failed", extra={"partition": partition})
            error = PublishError(f"{type(exc).__name__}: {exc}")
        finally:
            batch.settle(error)
            del self._in_flight[partition]
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._dispatch(partition)

    def _failed(self) -> None:
        if self._on_failure is not None:
            self._on_failure()

    async def __aenter__(self) -> SignalPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
