"""`StreamProcessor`: key-ordered concurrent consumption with safe commits, retries, dead
letters, changelog-backed state, timers, a circuit breaker and honest health.

    processor = StreamProcessor(settings=settings, topic=settings.pooul_topic_trade_signals,
                                group_id="pooul-trades", handler=handler,
                                state_topic=settings.pooul_topic_trade_state, name="trades")
    async with processor:
        await processor.run()          # until stop() / SIGTERM (see health.run_worker)

How a record travels: the fetch loop admits it (taking an in-flight budget slot; at the limit
fetching pauses) into its key's FIFO; the key's task runs it (`execution.Executor`: handler
behind the circuit breaker, retries with backoff, or a dead letter); then the record is
finished and its partition's committable offset (lowest unfinished) may move. Commits happen
every POOUL_COMMIT_INTERVAL, on revocation (after that partition's handler calls finished or
the revoke grace ran out) and on stop. A crash at any instant repeats records, never skips one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from prometheus_client import CollectorRegistry

from worker.kafka import make_consumer, make_producer
from worker.runtime.aio import wait_for
from worker.runtime.backoff import backoff_delay
from worker.runtime.breaker import CircuitBreaker, CircuitState
from worker.runtime.commits import COMMIT_TIMEOUT, OffsetCommitter
from worker.runtime.context import Handler, Outputs
from worker.runtime.deadletter import DeadLetterPublisher
from worker.runtime.errors import UsageError
from worker.runtime.execution import Executor
from worker.runtime.keyed import InFlightBudget
from worker.runtime.metrics import PartitionSnapshot, RuntimeMetrics, RuntimeSnapshot
from worker.runtime.partition import PartitionRun, Work, WorkKind
from worker.runtime.record import Record
from worker.runtime.restore import RESTORE_CONSUMER_OPTIONS, restore_runs
from worker.runtime.timers import TimerFeeder
from worker.runtime.watchdog import Watchdog, known_highwater
from worker.settings import Settings

__all__ = ["StreamProcessor"]

log = logging.getLogger(__name__)

Phase = Literal["new", "starting", "running", "stopping", "stopped"]

_FETCH_TIMEOUT_MS = 200
_MAX_BATCH = 5000
_CLIENT_CLOSE_TIMEOUT = 10.0
_REQUEST_TIMEOUT_MS = 40_000  # aiokafka's default
_REVOKE_FLUSH_EXTRA = 5.0  # seconds the producer flush on revoke gets beyond the grace
_RNG = random.Random()  # jitter of the fetch loop's reconnect backoff
# aiokafka keeps one produce request in flight per broker, and a handler awaits each write:
# records queue behind that request anyway, so lingering only adds to every write's latency;
# and batches of the default 16 KiB (about ten payment events) would split a burst's writes
# into many serial requests. 512 KiB leaves room under the broker's message.max.bytes (1 MiB
# by default; a batch above it would be rejected whole).
_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 0, "max_batch_size": 512 * 1024}


class StreamProcessor:
    """Runs `handler` over `topic` in consumer group `group_id` (see the module docstring).

    Keyword arguments:
        settings: runtime settings (POOUL_MAX_IN_FLIGHT, POOUL_COMMIT_INTERVAL, ...).
        topic: the input topic.
        group_id: the consumer group; every replica of one worker uses the same one.
        handler: `handle(record, ctx)` and `on_timer(ctx)`, see `worker.runtime.Handler`.
        state_topic: compacted changelog co-partitioned with `topic`; None = no keyed state.
        name: the `worker` label of metrics and the `service` of dead letters (default group_id).
        producer: a started acks=all producer to share (default: the processor owns one).
        registry: the Prometheus registry for this processor's metrics (default: a new one).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        topic: str,
        group_id: str,
        handler: Handler,
        state_topic: str | None = None,
        name: str | None = None,
        producer: AIOKafkaProducer | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.state_topic = state_topic
        self.name = name or group_id
        self._handler = handler
        self._producer = producer
        self._owns_producer = producer is None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = RuntimeMetrics(registry=self.registry, worker=self.name)
        self.metrics.watch(self.snapshot)
        self._budget = InFlightBudget(settings.pooul_max_in_flight, on_change=self._reconcile_pause)
        self._breaker = CircuitBreaker(
            failure_threshold=settings.pooul_circuit_failure_threshold,
            open_seconds=settings.pooul_circuit_open_seconds,
            open_max_seconds=settings.pooul_circuit_open_max_seconds,
            on_change=self._on_circuit_change,
        )
        self._phase: Phase = "new"
        self._runs: dict[int, PartitionRun] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._restore_consumer: AIOKafkaConsumer | None = None
        self._executor: Executor | None = None
        self._feeders: list[asyncio.Task[None]] = []  # fetch + timers: cancelled first on stop
        self._housekeeping: list[asyncio.Task[None]] = []  # commits + watchdog: cancelled last
        self._restore_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        # A stop asked for while starting waits for start() to finish (never runs beside it).
        self._stop_requested = False
        self._start_finished = asyncio.Event()
        self._done: asyncio.Future[None] | None = None
        self._committer = OffsetCommitter(name=self.name, metrics=self.metrics)
        self._timer_wakeup = asyncio.Event()
        self._fatal: BaseException | None = None
        self._assigned_once = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def circuit_state(self) -> CircuitState:
        return self._breaker.state

    async def __aenter__(self) -> StreamProcessor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, check the topics, join the group and start consuming (background tasks)."""
        if self._phase != "new":
            raise UsageError(f"start() may be called once (processor is {self._phase})")
        self._phase = "starting"
        self._done = asyncio.get_running_loop().create_future()
        settings = self.settings
        try:
            if self._producer is None:
                self._producer = make_producer(settings, **_PRODUCER_OPTIONS)
                await self._producer.start()
            self._executor = Executor(
                name=self.name,
                settings=settings,
                handler=self._handler,
                breaker=self._breaker,
                outputs=Outputs(
                    producer=self._producer,
                    state_topic=self.state_topic,
                    clock=time.time,
                    on_timer_set=lambda _at: self._timer_wakeup.set(),
                ),
                dead_letters=DeadLetterPublisher(
                    producer=self._producer, topic=settings.pooul_topic_dead_letters
                ),
                metrics=self.metrics,
                state_topic=self.state_topic,
            )
            if self.state_topic is not None:
                self._restore_consumer = make_consumer(settings, **RESTORE_CONSUMER_OPTIONS)
                await self._restore_consumer.start()
            self._consumer = make_consumer(settings, **self._consumer_options())
            await self._consumer.start()
            await self._check_topics()
            self._consumer.subscribe([self.topic], listener=_Listener(self))
        except BaseException:
            await self._close_clients()
            self._phase = "stopped"
            self._done.set_result(None)
            self._start_finished.set()
            raise
        self._phase = "running"
        watchdog = Watchdog(
            consumer=self._consumer,
            runs=lambda: list(self._runs.values()),
            # Only while open: half-open runs one probe, which must finish like any call.
            excused=lambda: self._breaker.state is CircuitState.OPEN,
            timeout=settings.pooul_stall_timeout,
            name=self.name,
        )
        timers = TimerFeeder(
            runs=self._runs.values,
            budget=self._budget,
            paused=lambda: self._breaker.state is CircuitState.OPEN,
            wakeup=self._timer_wakeup,
        )
        self._feeders = [
            asyncio.create_task(self._fetch_loop(), name=f"{self.name}-fetch"),
            asyncio.create_task(timers.run(), name=f"{self.name}-timers"),
        ]
        self._housekeeping = [
            asyncio.create_task(self._commit_loop(), name=f"{self.name}-commit"),
            asyncio.create_task(watchdog.run(), name=f"{self.name}-watchdog"),
        ]
        log.info(
            "stream processor started",
            extra={"worker": self.name, "topic": self.topic, "group_id": self.group_id},
        )
        self._start_finished.set()
        if self._stop_requested:
            self.request_stop()

    def _consumer_options(self) -> dict[str, Any]:
        settings = self.settings
        session_ms = int(settings.pooul_session_timeout * 1000)
        # A revocation waits for handler calls (grace), commits (bounded) and flushes the
        # producer (grace + 5 s): give it all of that, and a margin, before the group gives up
        # on this member and a new owner restores what this one still writes.
        rebalance_ms = max(session_ms, int(self._revoke_budget() * 1000))
        return {
            "group_id": self.group_id,
            "group_instance_id": settings.pooul_group_instance_id,
            "session_timeout_ms": session_ms,
            "heartbeat_interval_ms": int(settings.pooul_heartbeat_interval * 1000),
            "rebalance_timeout_ms": rebalance_ms,
            # The JoinGroup request waits for every member's revoke: it may take that long.
            "request_timeout_ms": max(_REQUEST_TIMEOUT_MS, rebalance_ms + 5000),
            "max_poll_records": _MAX_BATCH,
            "fetch_max_wait_ms": settings.pooul_fetch_max_wait_ms,
        }

    def _revoke_budget(self) -> float:
        """The longest `_on_revoked` can take, plus a margin (seconds)."""
        grace = self.settings.pooul_revoke_grace
        return grace + COMMIT_TIMEOUT + (grace + _REVOKE_FLUSH_EXTRA) + 5.0

    async def _check_topics(self) -> None:
        assert self._consumer is not None
        await self._consumer.topics()  # refreshes metadata
        inputs = self._consumer.partitions_for_topic(self.topic)
        if not inputs:
            raise UsageError(
                f"input topic {self.topic!r} does not exist (pooul-worker topics create)"
            )
        if self.state_topic is not None:
            changelog = self._consumer.partitions_for_topic(self.state_topic)
            if not changelog:
                raise UsageError(f"state topic {self.state_topic!r} does not exist")
            if len(changelog) != len(inputs):
                raise UsageError(
                    f"state topic {self.state_topic!r} has {len(changelog)} partitions, input "
                    f"{self.topic!r} has {len(inputs)}: they must be co-partitioned"
                )

    async def run(self) -> None:
        """Wait until the processor stopped; re-raise what made it fail, if anything did."""
        if self._done is None:
            raise UsageError("call start() (or use `async with processor`) before run()")
        await asyncio.shield(self._done)
        if self._fatal is not None:
            raise self._fatal

    def request_stop(self) -> None:
        """Begin a graceful stop without waiting (for signal handlers); while starting, the
        stop begins as soon as start() is done."""
        if self._phase == "starting":
            self._stop_requested = True
        elif self._phase == "running" and self._stop_task is None:
            self._stop_task = asyncio.create_task(self._shutdown(), name=f"{self.name}-stop")

    async def stop(self) -> None:
        """Stop fetching, drain for POOUL_SHUTDOWN_GRACE, commit, close. Twice is harmless."""
        if self._phase == "new":
            self._phase = "stopped"
            return
        self.request_stop()
        await self._start_finished.wait()
        if self._stop_task is not None:
            await asyncio.shield(self._stop_task)

    async def _shutdown(self) -> None:
        self._phase = "stopping"
        log.info("stream processor stopping: draining in-flight work", extra={"worker": self.name})
        runs: list[PartitionRun] = []
        abandoned = 0
        drained = False
        try:
            await _cancel(self._feeders)
            self._reconcile_pause()
            if self._restore_task is not None:
                await _cancel([self._restore_task])
            try:
                await wait_for(self._budget.wait_empty(), self.settings.pooul_shutdown_grace)
                drained = True
            except TimeoutError:
                drained = False
            runs = list(self._runs.values())
            for run in runs:
                run.revoke()
                abandoned += run.offsets.unfinished
            for run in runs:
                await run.queues.cancel()
            await self._commit(runs)
            self._release(runs, abandoned)
            await _cancel(self._housekeeping)
            self._breaker.close()
        finally:
            await self._close_clients()
            self._runs.clear()
            self._phase = "stopped"
            if self._done is not None and not self._done.done():
                self._done.set_result(None)
            log.info(
                "stream processor stopped",
                extra={
                    "worker": self.name,
                    "drained": drained,
                    "abandoned_records": abandoned,
                    "committed": {str(r.partition): r.last_committed for r in runs},
                },
            )

    async def _close_clients(self) -> None:
        clients: list[tuple[str, Any]] = [
            ("consumer", self._consumer),
            ("restore consumer", self._restore_consumer),
        ]
        if self._owns_producer:
            clients.append(("producer", self._producer))
        for label, client in clients:
            if client is None:
                continue
            try:
                await wait_for(client.stop(), _CLIENT_CLOSE_TIMEOUT)
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning(
                    "closing the %s failed", label, extra={"worker": self.name, "error": repr(exc)}
                )

    def _fail(self, exc: BaseException) -> None:
        """An unexpected error in the runtime itself: record it and stop (run() re-raises)."""
        if self._fatal is None:
            self._fatal = exc
            log.error(
                "stream processor failed; stopping", exc_info=exc, extra={"worker": self.name}
            )
        self.request_stop()

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        failures = 0
        while True:
            self._reconcile_pause()
            try:
                batch = await consumer.getmany(
                    timeout_ms=_FETCH_TIMEOUT_MS,
                    max_records=max(1, min(self._budget.room, _MAX_BATCH)),
                )
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                if not exc.retriable:
                    self._fail(exc)
                    return
                failures += 1
                log.warning(
                    "fetch failed; retrying", extra={"worker": self.name, "error": repr(exc)}
                )
                await asyncio.sleep(backoff_delay(failures, base=0.1, maximum=5.0, rng=_RNG))
                continue
            except Exception as exc:
                self._fail(exc)
                return
            failures = 0
            if batch:
                self._admit(batch)

    def _admit(self, batch: dict[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp, messages in batch.items():
            run = self._runs.get(tp.partition)
            if run is None or not run.ready or not run.active() or tp.topic != self.topic:
                # Not ours to process right now: rewind, so the fetch position never skips them.
                if tp in consumer.assignment():
                    consumer.seek(tp, messages[0].offset)
                continue
            self._budget.acquire(len(messages))
            run.held += len(messages)
            offsets = run.offsets
            submit = run.queues.submit
            for message in messages:
                offsets.add(message.offset)
                key = message.key
                submit(
                    b"" if key is None else key,
                    Work(WorkKind.RECORD, Record.from_consumer_record(message)),
                )

    def _reconcile_pause(self) -> None:
        """Pause exactly the partitions that must not be fetched now; resume the others.

        Held back: partitions still restoring, and all of them while stopping, while the
        in-flight budget is used up, or while the circuit breaker is open.
        """
        consumer = self._consumer
        if consumer is None or self._phase not in ("running", "stopping"):
            return
        assigned = consumer.assignment()
        if not assigned:
            return
        hold_all = (
            self._phase != "running"
            or self._budget.full
            or self._breaker.state is CircuitState.OPEN
        )
        want: set[TopicPartition] = set()
        for tp in assigned:
            run = self._runs.get(tp.partition)
            if hold_all or run is None or not run.ready or not run.active():
                want.add(tp)
        paused = consumer.paused()
        if to_pause := want - paused:
            consumer.pause(*to_pause)
        if to_resume := (paused & assigned) - want:
            consumer.resume(*to_resume)

    def _on_circuit_change(self, state: CircuitState) -> None:
        if state is CircuitState.OPEN:
            self.metrics.circuit_opened.labels(self.name).inc()
        self._reconcile_pause()
        self._timer_wakeup.set()

    # ------------------------------------------------------------------ running items

    async def _run_item(self, run: PartitionRun, key: bytes, work: Work) -> None:
        executor = self._executor
        assert executor is not None
        if work.record is not None:
            done = await executor.record(run, key, work.record)
        elif work.kind is WorkKind.TIMER:
            done = await executor.timer(run, key, work.due)
        else:
            done = await executor.expire(run, key, work.due)
        if not done:
            return  # abandoned on revocation: stays unfinished and uncommitted
        if work.record is not None:
            run.offsets.finish(work.record.offset)
        run.held -= 1
        self._budget.release()

    # ------------------------------------------------------------------ rebalancing

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._phase in ("stopping", "stopped"):
            return  # the drain is under way: nothing new may start (the group reassigns)
        mine = sorted(
            (tp for tp in assigned if tp.topic == self.topic), key=lambda tp: tp.partition
        )
        self.metrics.rebalances.labels(self.name, "assigned").inc()
        needs_restore = self.state_topic is not None
        runs = []
        for tp in mine:
            run = PartitionRun(
                tp, run=self._run_item, on_crash=self._fail, needs_restore=needs_restore
            )
            self._runs[tp.partition] = run
            runs.append(run)
        self._assigned_once = True
        self._reconcile_pause()  # restoring partitions are paused before any fetch
        log.info(
            "partitions assigned",
            extra={"worker": self.name, "partitions": [r.partition for r in runs]},
        )
        if needs_restore and runs:
            self._restore_task = asyncio.create_task(
                self._restore(runs), name=f"{self.name}-restore"
            )
            self._restore_task.add_done_callback(self._restore_ended)

    def _restore_ended(self, task: asyncio.Task[None]) -> None:
        """A restore that failed for a reason it does not retry would leave its partitions
        paused for good with the process looking alive: fail the processor instead."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._fail(error)

    async def _restore(self, runs: list[PartitionRun]) -> None:
        assert self._restore_consumer is not None and self.state_topic is not None
        await restore_runs(
            self._restore_consumer,
            topic=self.state_topic,
            runs=runs,
            owned=lambda run: self._runs.get(run.partition) is run and run.active(),
            name=self.name,
            metrics=self.metrics,
        )
        self._reconcile_pause()
        self._timer_wakeup.set()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish or abandon the partitions' work, commit their safe offsets, drop their state.

        Handler calls already running get POOUL_REVOKE_GRACE; anything else (queued records,
        retries waiting for their backoff or for the breaker) is abandoned at once: it stays
        uncommitted and the next owner redoes it. Pending producer writes are flushed so the
        next owner's restore sees every changelog write of this one.
        """
        self.metrics.rebalances.labels(self.name, "revoked").inc()
        if self._restore_task is not None:
            await _cancel([self._restore_task])
            self._restore_task = None
        runs = [
            self._runs.pop(tp.partition)
            for tp in revoked
            if tp.topic == self.topic and tp.partition in self._runs
        ]
        if not runs:
            return
        for run in runs:
            run.revoke()
        tasks = [task for run in runs for task in run.queues.tasks()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.pooul_revoke_grace)
        abandoned = sum(run.offsets.unfinished for run in runs)
        for run in runs:
            await run.queues.cancel()
        await self._commit(runs)
        self._release(runs, abandoned)
        if self._producer is not None:
            try:
                await wait_for(
                    self._producer.flush(), self.settings.pooul_revoke_grace + _REVOKE_FLUSH_EXTRA
                )
            except (KafkaError, TimeoutError) as exc:
                log.warning(
                    "flush on revoke failed", extra={"worker": self.name, "error": repr(exc)}
                )
        log.info(
            "partitions revoked",
            extra={
                "worker": self.name,
                "partitions": [r.partition for r in runs],
                "abandoned_records": abandoned,
                "committed": {str(r.partition): r.last_committed for r in runs},
            },
        )

    def _release(self, runs: Iterable[PartitionRun], abandoned: int) -> None:
        for run in runs:
            if run.held:
                self._budget.release(run.held)
                run.held = 0
        if abandoned:
            self.metrics.abandoned.inc(abandoned)

    # ------------------------------------------------------------------ commits

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pooul_commit_interval)
            await self._commit(list(self._runs.values()))

    async def _commit(self, runs: Iterable[PartitionRun]) -> None:
        await self._committer.commit(self._consumer, runs)

    # ------------------------------------------------------------------ introspection

    def snapshot(self) -> RuntimeSnapshot:
        """Live view for /healthz, /readyz and the scrape-time gauges."""
        problems: list[str] = []
        if self._fatal is not None:
            problems.append(f"failed: {type(self._fatal).__name__}: {self._fatal}")
        if self._phase == "running":
            problems.extend(
                f"{t.get_name()} task ended" for t in self._feeders + self._housekeeping if t.done()
            )
        partitions = []
        for run in sorted(self._runs.values(), key=lambda r: r.partition):
            if run.stall_reason is not None and self._phase == "running":
                problems.append(run.stall_reason)
            partitions.append(
                PartitionSnapshot(
                    partition=run.partition,
                    ready=run.ready,
                    unfinished=run.offsets.unfinished,
                    oldest_unfinished_age=run.offsets.oldest_unfinished_age(),
                    committed=run.last_committed,
                    highwater=known_highwater(self._consumer, run),
                    state_keys=0 if run.state is None else len(run.state),
                    stalled=run.stall_reason is not None,
                )
            )
        return RuntimeSnapshot(
            phase=self._phase,
            in_flight=self._budget.used,
            max_in_flight=self._budget.capacity,
            circuit_state=int(self._breaker.state),
            assigned=self._assigned_once,
            restoring=any(not run.ready for run in self._runs.values()),
            partitions=partitions,
            problems=problems,
        )

    def assigned_partitions(self) -> list[int]:
        """Partitions this processor owns right now (restored or not)."""
        return sorted(self._runs)

    def committed_offsets(self) -> dict[int, int | None]:
        """The last offset this processor committed per owned partition."""
        return {p: run.last_committed for p, run in sorted(self._runs.items())}


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they are gone."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Bridges aiokafka's rebalance callbacks (which only log exceptions) to the processor."""

    def __init__(self, processor: StreamProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self._processor._on_revoked(revoked)
        except Exception as exc:
            self._processor._fail(exc)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._processor._on_assigned(assigned)
        except Exception as exc:
            self._processor._fail(exc)
