"""`pooul-worker bench runtime`: the stream runtime against a plain consumer loop, same run.

Workload: N records with many distinct keys on 8 partitions; the handler awaits a simulated
I/O latency L (default 100 ms), like a Pooul query. Two consumers process it in turn, each in
its own consumer group, on the same event loop:

- (a) plain loop — aiokafka `getmany`, then per partition one record at a time (partitions in
  parallel), commit after each batch: the shape that caps a worker at partitions / L records/s.
  It runs on the first `--baseline-records` records of the same topic (at ~80 records/s the
  whole workload would take minutes); its rate is what the ratio divides by.
- (b) stream runtime — `StreamProcessor` with POOUL_MAX_IN_FLIGHT (or `--max-in-flight`).

Each is timed from its first record received to its last record finished (group joins are not
counted), and CPU seconds are `time.process_time()` of this process over the same window (the
broker is a separate process and not counted). Then the state restore: `--restore-keys`
changelog entries over 8 partitions, restored through a `StreamProcessor`'s assignment path
(restore time from its `pooul_runtime_restore_duration_seconds`).

Targets: (b)/(a) ≥ 25× at L = 100 ms; 1,000,000 keys restored in ≤ 10 s. The broker is an
embedded Tansu unless `KAFKA_BOOTSTRAP_SERVERS` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from worker.bench.harness import bench_broker
from worker.kafka import make_consumer, make_producer
from worker.loop import run
from worker.runtime import KeyContext, Record, StreamProcessor
from worker.runtime.state import StateEntry, encode_entry
from worker.settings import Settings
from worker.topics import create_topics

__all__ = ["register"]

RATIO_TARGET = 25.0
RESTORE_TARGET_SECONDS = 10.0
_PARTITIONS = 8


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runtime",
        help="stream runtime vs a plain one-record-at-a-time loop; state restore rate",
        description="Prints records/s and CPU seconds per record for a plain consumer loop and "
        "the stream runtime on the same workload, their ratio, and the state restore rate.",
    )
    parser.add_argument("--records", type=int, default=20_000, help="records for the runtime (N)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulated I/O latency L")
    parser.add_argument(
        "--baseline-records", type=int, default=400, help="records for the plain loop"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="default: POOUL_MAX_IN_FLIGHT"
    )
    parser.add_argument("--restore-keys", type=int, default=1_000_000, help="0 skips the restore")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.records < 1 or args.keys < 1 or args.latency_ms < 0 or args.baseline_records < 1:
        print(
            "pooul-worker bench runtime: --records/--keys/--baseline-records ≥ 1, --latency-ms ≥ 0"
        )
        return 2
    return run(_bench(args, settings))


@dataclass
class _Result:
    label: str
    records: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_per_record(self) -> float:
        return self.cpu_seconds / self.records


class _Window:
    """First-record-to-last-record wall and CPU time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started_at: float | None = None
        self.cpu_at_start = 0.0
        self.finished = asyncio.Event()
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = time.perf_counter()
            self.cpu_at_start = time.process_time()

    def finish_one(self) -> None:
        self.done += 1
        if self.done == self.total and self.started_at is not None:
            self.seconds = time.perf_counter() - self.started_at
            self.cpu_seconds = time.process_time() - self.cpu_at_start
            self.finished.set()


async def _bench(args: argparse.Namespace, base: Settings) -> int:
    latency = args.latency_ms / 1000
    async with bench_broker() as broker:
        bootstrap = broker.bootstrap_servers
        suffix = uuid.uuid4().hex[:8]
        settings = base.model_copy(
            update={
                "kafka_bootstrap_servers": bootstrap,
                "pooul_topic_partitions": _PARTITIONS,
                "pooul_session_timeout": min(base.pooul_session_timeout, 3.0),
                "pooul_heartbeat_interval": min(base.pooul_heartbeat_interval, 0.5),
                **{
                    f"pooul_topic_{name}": f"bench.{topic}.{suffix}"
                    for name, topic in base.topics().items()
                },
            }
        )
        if args.max_in_flight is not None:
            settings = settings.model_copy(update={"pooul_max_in_flight": args.max_in_flight})
        await create_topics(settings)
        topic = settings.pooul_topic_order_requests
        produced = await _produce_workload(settings, topic, args.records, args.keys)
        print(
            f"runtime benchmark — {args.records:,} records, {args.keys:,} keys, {_PARTITIONS} "
            f"partitions, latency {args.latency_ms:g} ms, max in flight "
            f"{settings.pooul_max_in_flight:,}, broker {bootstrap}"
        )
        baseline = await _plain_loop(settings, topic, min(args.baseline_records, produced), latency)
        runtime = await _stream_runtime(settings, topic, produced, latency)
        ratio = runtime.rate / baseline.rate
        print(f"{'mode':<40}{'records':>10}{'seconds':>10}{'records/s':>12}{'CPU s/record':>15}")
        for result in (baseline, runtime):
            print(
                f"{result.label:<40}{result.records:>10,}{result.seconds:>10.2f}"
                f"{result.rate:>12,.1f}{result.cpu_per_record:>15.6f}"
            )
        verdict = "ok" if ratio >= RATIO_TARGET else "BELOW TARGET"
        print(
            f"{'ratio (b)/(a)':<40}{'':>10}{'':>10}{ratio:>11,.1f}x   target ≥ {RATIO_TARGET:g}x: {verdict}"
        )
        # Like every bench: a missed target is printed; only a wrong result fails the command.
        if args.restore_keys > 0 and not await _restore_bench(settings, args.restore_keys):
            return 1
    return 0


async def _produce_workload(settings: Settings, topic: str, count: int, keys: int) -> int:
    producer = make_producer(settings, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            futures.append(
                await producer.send(topic, b'{"n": %d}' % i, key=b"trade-%09d" % (i % keys))
            )
            if len(futures) >= 10_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def _plain_loop(settings: Settings, topic: str, count: int, latency: float) -> _Result:
    """(a): getmany, then one record at a time per partition, commit after each batch."""
    window = _Window(count)
    consumer: AIOKafkaConsumer = make_consumer(
        settings,
        group_id=f"bench-plain-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=int(settings.pooul_session_timeout * 1000),
        heartbeat_interval_ms=int(settings.pooul_heartbeat_interval * 1000),
    )
    await consumer.start()

    async def one_partition(records: list[Any]) -> None:
        for _record in records:
            if window.done >= count:
                return
            await asyncio.sleep(latency)
            window.finish_one()

    try:
        consumer.subscribe([topic])
        while not window.finished.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                continue
            window.begin()
            await asyncio.gather(*(one_partition(records) for records in batch.values()))
            await consumer.commit()
    finally:
        await consumer.stop()
    return _Result(
        "(a) plain loop, 1 at a time/partition", count, window.seconds, window.cpu_seconds
    )


class _SleepHandler:
    def __init__(self, window: _Window, latency: float) -> None:
        self._window = window
        self._latency = latency

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self._window.begin()
        await asyncio.sleep(self._latency)
        self._window.finish_one()

    async def on_timer(self, ctx: KeyContext) -> None:
        raise AssertionError("no timers in the benchmark")


async def _stream_runtime(settings: Settings, topic: str, count: int, latency: float) -> _Result:
    """(b): the same records through a StreamProcessor."""
    window = _Window(count)
    processor = StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=f"bench-runtime-{uuid.uuid4().hex[:6]}",
        handler=_SleepHandler(window, latency),
        name="bench",
    )
    async with processor:
        await window.finished.wait()
    return _Result("(b) stream runtime", count, window.seconds, window.cpu_seconds)


class _NoRecords:
    async def handle(self, record: Record, ctx: KeyContext) -> None:
        raise AssertionError("the restore benchmark's input topic is empty")

    async def on_timer(self, ctx: KeyContext) -> None:
        return None


async def _restore_bench(settings: Settings, keys: int) -> bool:
    """Write `keys` changelog entries, time their restore through a processor's assignment;
    False if any key did not come back."""
    state_topic = settings.pooul_topic_trade_state
    producer = make_producer(settings, linger_ms=50, max_batch_size=1 << 20)
    await producer.start()
    written_bytes = 0
    try:
        futures = []
        now = time.time()
        for i in range(keys):
            # Like the trades worker's entries: every one expires, every other one has a timer.
            value = encode_entry(
                StateEntry(
                    {"trade_id": f"T{i:012d}", "phase": "pending", "fee": i % 100_000, "checks": 1},
                    wake_at=now + 3600 + i % 7200 if i % 2 else None,
                    expires_at=now + 7 * 86400,
                )
            )
            written_bytes += len(value)
            futures.append(
                await producer.send(
                    state_topic, value, key=b"trade-%09d" % i, partition=i % _PARTITIONS
                )
            )
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    processor = StreamProcessor(
        settings=settings,
        topic=settings.pooul_topic_trade_signals,
        group_id=f"bench-restore-{uuid.uuid4().hex[:6]}",
        handler=_NoRecords(),
        state_topic=state_topic,
        name="bench-restore",
    )
    cpu_before = time.process_time()
    async with processor:
        while not processor.snapshot().ready:  # noqa: ASYNC110 (readiness is a snapshot, no event)
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu_before
        restored = sum(p.state_keys for p in processor.snapshot().partitions)
        seconds = processor.registry.get_sample_value(
            "pooul_runtime_restore_duration_seconds_sum", {"worker": "bench-restore"}
        )
    assert seconds is not None
    verdict = "ok" if seconds <= RESTORE_TARGET_SECONDS else "BELOW TARGET"
    print()
    print(
        f"state restore — {keys:,} keys written over {_PARTITIONS} partitions "
        f"({written_bytes / 1e6:.1f} MB of values)"
    )
    print(f"{'keys restored':<20}{'seconds':>10}{'keys/s':>14}{'CPU s incl. join':>18}")
    print(f"{restored:<20,}{seconds:>10.2f}{restored / seconds:>14,.0f}{cpu:>18.2f}")
    print(f"target ≤ {RESTORE_TARGET_SECONDS:g} s for 1,000,000 keys: {verdict}")
    if restored != keys:
        print(f"ERROR: {restored:,} keys restored of {keys:,} written")
        return False
    return True
