"""`pooul-worker bench orders`: the orders worker against a one-at-a-time-per-partition baseline.

Processes, all on this machine:
- a broker (embedded Tansu unless `KAFKA_BOOTSTRAP_SERVERS` is set);
- the sandbox (`pooul-worker sandbox`), every gateway call delayed by L (default 100 ms);
- the worker under test, a subprocess, so its CPU time is read from /proc and nothing else
  counts: (a) baseline — the same orders handler, but one record at a time per partition
  (the shape of a classic consumer loop: at most partitions / L orders/s); (b) `pooul-worker
  orders` itself, concurrent by key;
- this process: produces the requests and reads the results.

Phases per worker (fresh topics, 8 partitions, the worker ready before the clock starts):
1. burst — N requests produced at once; orders/s = N / (first request sent → last result
   read); latency = each request's send → its result read (queueing included); CPU seconds of
   the worker over the same window / N. (a) gets `--baseline-requests` (at ~80/s N would take
   minutes).
2. paced — (b) only: requests at half of (b)'s burst rate for `--paced-seconds`, latency from
   each request's scheduled send time: the request → result latency of a worker that keeps up.

Every request must end `created` with one sandbox order each; the run fails otherwise.
Targets: (b)/(a) orders/s ≥ 20×; (b) ≤ 1 ms CPU per order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.bench.harness import (
    ChildProcess,
    CpuMeter,
    LoadPhase,
    OnePerPartition,
    baseline_worker_port,
    bench_broker,
    bench_settings,
    collector_paused,
    print_comparison,
    print_targets,
    set_sandbox_latency,
    settings_env,
    suffixed_topics,
    worker_argv,
    worker_command,
)
from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

RATIO_TARGET = 20.0
CPU_TARGET_SECONDS = 0.001
_PARTITIONS = 8
_MERCHANT_ID = "888100000008888"
_MERCHANT_KEY = "bench-orders-md5-key-0123456789"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "orders",
        help="orders worker vs one-at-a-time per partition, against the sandbox with latency L",
        description="Prints orders/s, request→result latency p50/p99 and worker CPU seconds per "
        "order for a one-at-a-time-per-partition baseline and the orders worker, and the ratio.",
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests for (b) (N)")
    parser.add_argument(
        "--baseline-requests", type=int, default=240, help="requests for the baseline (a)"
    )
    parser.add_argument("--latency-ms", type=float, default=100.0, help="sandbox latency L")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0, help="paced phase length (0 skips it)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.requests < 1 or args.baseline_requests < 1 or args.latency_ms < 0:
        print("pooul-worker bench orders: --requests/--baseline-requests ≥ 1, --latency-ms ≥ 0")
        return 2
    if args.paced_seconds < 0:
        print("pooul-worker bench orders: --paced-seconds ≥ 0")
        return 2
    return run(_bench(args, settings))


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Phase(LoadPhase):
    """One phase against one worker; `count` = requests, with their result statuses."""

    statuses: dict[str, int] = field(default_factory=dict)


# --- the baseline worker --------------------------------------------------------------------


async def _serve_baseline_worker(port: int) -> None:
    """(a): the orders handler behind one lock per partition — one record at a time each."""
    from prometheus_client import CollectorRegistry

    from worker.logs import configure_logging
    from worker.orders import OrdersHandler, OrdersMetrics
    from worker.pooul import PooulClient
    from worker.runtime import StreamProcessor, run_worker
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings.pooul_log_level, settings.pooul_log_format)
    registry = CollectorRegistry()
    async with PooulClient.from_settings(settings) as client:
        handler = OrdersHandler(
            client=client, settings=settings, metrics=OrdersMetrics(registry=registry)
        )
        processor = StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_order_requests,
            group_id=settings.pooul_orders_group_id,
            handler=OnePerPartition(handler),
            state_topic=settings.pooul_topic_order_state,
            name="orders-baseline",
            registry=registry,
        )
        await run_worker(processor, port=port)


# --- load -----------------------------------------------------------------------------------


def _request(run: str, n: int) -> tuple[bytes, bytes]:
    mch_trade_id = f"{run}{n:07d}"
    body = orjson.dumps(
        {
            "merchant_id": _MERCHANT_ID,
            "mch_trade_id": mch_trade_id,
            "body": "云南普洱 357g",
            "total_fee": 100 + n % 900,
            "spbill_create_ip": "10.20.30.40",
            "buyer_id": "2088102146225135",
            "attach": "bench",
            "request_id": str(n),
        }
    )
    return mch_trade_id.encode(), body


class _Load:
    """Produces requests of one run and reads its results; latency keyed by request_id."""

    def __init__(self, settings: Settings, run: str) -> None:
        from worker.kafka import make_consumer, make_producer

        self._settings = settings
        self._run = run
        self._producer = make_producer(settings, linger_ms=5)
        # A short fetch wait: the broker may hold a fetch for its whole max wait even when
        # records arrive, and this reader must not add that to the measured latency.
        self._consumer = make_consumer(settings, fetch_max_wait_ms=5)
        self.sent_at: dict[int, float] = {}
        self.results: dict[int, tuple[float, str]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        await self._producer.start()
        await self._consumer.start()
        topic = self._settings.pooul_topic_order_results
        tps = [TopicPartition(topic, p) for p in range(_PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    result = orjson.loads(message.value)
                    n = int(result.get("request_id") or -1)
                    self.results.setdefault(n, (now, result["status"]))

    async def burst(self, first: int, count: int) -> None:
        topic = self._settings.pooul_topic_order_requests
        futures = []
        for n in range(first, first + count):
            key, value = _request(self._run, n)
            self.sent_at[n] = time.perf_counter()
            futures.append(await self._producer.send(topic, value, key=key))
        await asyncio.gather(*futures)

    async def paced(self, first: int, count: int, rate: float) -> None:
        topic = self._settings.pooul_topic_order_requests
        start = time.perf_counter()
        futures = []
        for i, n in enumerate(range(first, first + count)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = _request(self._run, n)
            self.sent_at[n] = scheduled
            futures.append(await self._producer.send(topic, value, key=key))
        await asyncio.gather(*futures)

    async def wait(self, ids: range, *, within: float) -> None:
        deadline = time.monotonic() + within
        while any(n not in self.results for n in ids):
            if time.monotonic() > deadline:
                missing = sum(1 for n in ids if n not in self.results)
                raise RuntimeError(f"{missing} results missing after {within:.0f} s")
            await asyncio.sleep(0.02)

    def phase(self, ids: range, *, started: float, cpu: float | None) -> Phase:
        ended = max(self.results[n][0] for n in ids)
        statuses: dict[str, int] = defaultdict(int)
        for n in ids:
            statuses[self.results[n][1]] += 1
        return Phase(
            count=len(ids),
            seconds=ended - started,
            latencies=[self.results[n][0] - self.sent_at[n] for n in ids],
            cpu=cpu,
            statuses=dict(statuses),
        )

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._producer.stop()
        await self._consumer.stop()


# --- the benchmark --------------------------------------------------------------------------


async def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from worker.broker import free_port

    async with bench_broker() as broker:
        base = bench_settings(
            settings,
            broker=broker,
            merchant_id=_MERCHANT_ID,
            merchant_key=_MERCHANT_KEY,
            partitions=_PARTITIONS,
        )
        print(f"broker: {broker.describe()}")
        print(
            f"sandbox latency L = {args.latency_ms:g} ms, {_PARTITIONS} partitions, "
            f"N = {args.requests} (baseline {args.baseline_requests}), {os.cpu_count()} CPUs"
        )
        sandbox = ChildProcess(
            name="sandbox",
            argv=worker_command("sandbox", port=(port := free_port())),
            env=settings_env(base),
            port=port,
        )
        try:
            await sandbox.wait_ready("/sandbox/health")
            await set_sandbox_latency(sandbox.url, args.latency_ms)
            baseline = await _run_worker(
                base,
                sandbox_url=sandbox.url,
                baseline=True,
                burst=args.baseline_requests,
                paced=None,
            )
            print(f"(a) baseline: {baseline['burst'].rate:,.1f} orders/s")
            main = await _run_worker(
                base,
                sandbox_url=sandbox.url,
                baseline=False,
                burst=args.requests,
                paced=args.paced_seconds or None,
            )
            orders = await _sandbox_orders(sandbox.url)
        finally:
            await sandbox.stop()
    expected = (
        args.baseline_requests + args.requests + (main["paced"].count if "paced" in main else 0)
    )
    return _report(baseline, main, platform_orders=orders, expected_orders=expected)


async def _sandbox_orders(url: str) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/sandbox/orders", params={"merchant_id": _MERCHANT_ID}) as response,
    ):
        body = await response.json()
    orders = body["orders"]
    distinct = {order["mch_trade_id"] for order in orders}
    if len(distinct) != len(orders):
        raise RuntimeError(f"{len(orders) - len(distinct)} duplicate platform orders")
    return len(orders)


async def _run_worker(
    base: Settings, *, sandbox_url: str, baseline: bool, burst: int, paced: float | None
) -> dict[str, Phase]:
    from worker.broker import free_port
    from worker.topics import create_topics

    run = "A" if baseline else "B"
    suffix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            **suffixed_topics(base, suffix),
            "pooul_base_url": sandbox_url,
            "pooul_notify_url": f"{sandbox_url}/merchant-notify",
            "pooul_orders_group_id": f"orders-{suffix}",
        }
    )
    await create_topics(settings)
    worker = ChildProcess(
        name="orders-baseline" if baseline else "orders",
        argv=worker_argv(command="orders", baseline=baseline, port=(port := free_port())),
        env=settings_env(settings),
        port=port,
    )
    load = _Load(settings, run)
    phases: dict[str, Phase] = {}
    try:
        await worker.wait_ready("/readyz")
        await load.start()
        ids = range(burst)
        cpu = CpuMeter(worker=worker.pid)
        with collector_paused():  # this process's own GC pauses would count as result latency
            started = time.perf_counter()
            await load.burst(0, burst)
            await load.wait(ids, within=max(120.0, burst * 0.05))
        phases["burst"] = load.phase(ids, started=started, cpu=cpu.read().get("worker"))
        if paced:
            rate = phases["burst"].rate / 2
            count = max(1, int(rate * paced))
            ids = range(burst, burst + count)
            cpu = CpuMeter(worker=worker.pid)
            with collector_paused():
                started = time.perf_counter()
                await load.paced(burst, count, rate)
                await load.wait(ids, within=120.0)
            phases["paced"] = load.phase(ids, started=started, cpu=cpu.read().get("worker"))
    finally:
        await load.stop()
        await worker.stop()
    return phases


def _report(
    baseline: dict[str, Phase],
    main: dict[str, Phase],
    *,
    platform_orders: int,
    expected_orders: int,
) -> int:
    a, b = baseline["burst"], main["burst"]
    print_comparison(
        a,
        b,
        main.get("paced"),
        width=38,
        title_b="(b) orders worker",
        count_label="requests",
        rate_label="orders",
        unit="orders",
        latency_label="request→result",
        item="order",
    )
    print_targets(
        a,
        b,
        width=27,
        unit="orders",
        item="order",
        ratio_target=RATIO_TARGET,
        cpu_target_seconds=CPU_TARGET_SECONDS,
    )
    statuses: dict[str, int] = defaultdict(int)
    for phase in (*baseline.values(), *main.values()):
        for status, count in phase.statuses.items():
            statuses[status] += count
    print(
        f"results: {dict(statuses)}; sandbox orders: {platform_orders} (expected {expected_orders})"
    )
    if set(statuses) != {"created"} or platform_orders != expected_orders:
        print("ERROR: every request must end `created` with exactly one platform order")
        return 1
    return 0


if __name__ == "__main__":
    # `python -m worker.bench.orders --baseline-worker PORT`: the baseline worker process (a).
    run(_serve_baseline_worker(baseline_worker_port()))
