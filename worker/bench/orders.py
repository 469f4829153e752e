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
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

RATIO_TARGET = 20.0
CPU_TARGET_SECONDS = 0.001
_PARTITIONS = 8
_MERCHANT_ID = "888100000008888"
_MERCHANT_KEY = "bench-orders-md5-key-0123456789"
_STARTUP_SECONDS = 60.0


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
class Phase:
    """One phase against one worker."""

    requests: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def cpu_per_order(self) -> float | None:
        return None if self.cpu is None or not self.requests else self.cpu / self.requests


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- child processes ------------------------------------------------------------------------


def _settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOUL_", "KAFKA_"))}
    for name, value in settings.model_dump().items():
        if value is None or name == "pooul_merchant_keys":
            continue
        env[name.upper()] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env["POOUL_MERCHANT_KEYS"] = settings.merchant_keys.as_json()
    env["POOUL_LOG_LEVEL"] = "WARNING"
    return env


class _Child:
    """A subprocess with a log file, ready when `ready_path` answers 200; stopped by SIGTERM."""

    def __init__(self, *, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, path: str) -> None:
        import aiohttp

        deadline = time.monotonic() + _STARTUP_SECONDS
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + path) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready: {self.log_tail()}")
                await asyncio.sleep(0.05)

    def log_tail(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-2000:]

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self._log.close()


def _worker_argv(*, baseline: bool, port: int) -> list[str]:
    if baseline:
        return [sys.executable, "-m", "worker.bench.orders", "--baseline-worker", str(port)]
    return [sys.executable, "-m", "worker", "orders", "--port", str(port)]


async def _serve_baseline_worker(port: int) -> None:
    """(a): the orders handler behind one lock per partition — one record at a time each."""
    from prometheus_client import CollectorRegistry

    from worker.logs import configure_logging
    from worker.orders import OrdersHandler, OrdersMetrics
    from worker.pooul import PooulClient
    from worker.runtime import KeyContext, Record, StreamProcessor, run_worker
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings.pooul_log_level, settings.pooul_log_format)

    class OnePerPartition:
        def __init__(self, inner: OrdersHandler) -> None:
            self._inner = inner
            self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

        async def handle(self, record: Record, ctx: KeyContext) -> None:
            async with self._locks[ctx.partition]:
                await self._inner.handle(record, ctx)

        async def on_timer(self, ctx: KeyContext) -> None:
            await self._inner.on_timer(ctx)

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
            requests=len(ids),
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
    from worker.broker import EmbeddedBroker, free_port

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker()
    if broker is not None:
        await broker.start()
    bootstrap = external or (broker.bootstrap_servers if broker else "")
    # A fresh Settings (not model_copy): the merchant keys are parsed by a validator.
    base = Settings(
        **{
            **settings.model_dump(),
            "kafka_bootstrap_servers": bootstrap,
            "pooul_merchant_keys": orjson.dumps({_MERCHANT_ID: _MERCHANT_KEY}).decode(),
            "pooul_merchant_keys_file": None,
            "pooul_topic_partitions": _PARTITIONS,
        }
    )
    print(f"broker: {'external ' + bootstrap if external else 'embedded Tansu ' + bootstrap}")
    print(
        f"sandbox latency L = {args.latency_ms:g} ms, {_PARTITIONS} partitions, "
        f"N = {args.requests} (baseline {args.baseline_requests}), {os.cpu_count()} CPUs"
    )
    sandbox = _Child(
        name="sandbox",
        argv=[sys.executable, "-m", "worker", "sandbox", "--port", str(port := free_port())],
        env=_settings_env(base),
        port=port,
    )
    try:
        await sandbox.wait_ready("/sandbox/health")
        await _set_latency(sandbox.url, args.latency_ms)
        baseline = await _run_worker(
            base, sandbox_url=sandbox.url, baseline=True, burst=args.baseline_requests, paced=None
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
        if broker is not None:
            await asyncio.to_thread(broker.stop_sync, 1.0)
    expected = (
        args.baseline_requests + args.requests + (main["paced"].requests if "paced" in main else 0)
    )
    return _report(baseline, main, platform_orders=orders, expected_orders=expected)


async def _set_latency(url: str, latency_ms: float) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/sandbox/faults", json={"latency_ms": latency_ms}) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"sandbox refused the latency: {await response.text()}")


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
    topics = {f"pooul_topic_{name}": f"{topic}.{suffix}" for name, topic in base.topics().items()}
    settings = base.model_copy(
        update={
            **topics,
            "pooul_base_url": sandbox_url,
            "pooul_notify_url": f"{sandbox_url}/merchant-notify",
            "pooul_orders_group_id": f"orders-{suffix}",
        }
    )
    await create_topics(settings)
    worker = _Child(
        name="orders-baseline" if baseline else "orders",
        argv=_worker_argv(baseline=baseline, port=(port := free_port())),
        env=_settings_env(settings),
        port=port,
    )
    load = _Load(settings, run)
    phases: dict[str, Phase] = {}
    try:
        await worker.wait_ready("/readyz")
        await load.start()
        ids = range(burst)
        cpu0 = _process_cpu(worker.pid)
        started = time.perf_counter()
        await load.burst(0, burst)
        await load.wait(ids, within=max(120.0, burst * 0.05))
        cpu1 = _process_cpu(worker.pid)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        phases["burst"] = load.phase(ids, started=started, cpu=cpu)
        if paced:
            rate = phases["burst"].rate / 2
            count = max(1, int(rate * paced))
            ids = range(burst, burst + count)
            cpu0 = _process_cpu(worker.pid)
            started = time.perf_counter()
            await load.paced(burst, count, rate)
            await load.wait(ids, within=120.0)
            cpu1 = _process_cpu(worker.pid)
            cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            phases["paced"] = load.phase(ids, started=started, cpu=cpu)
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
    def cpu(phase: Phase | None) -> str:
        value = None if phase is None else phase.cpu_per_order
        return "n/a" if value is None else f"{value * 1000:.3f} ms"

    def latency(phase: Phase | None) -> str:
        if phase is None:
            return "-"
        return f"{phase.percentile_ms(50):,.0f} / {phase.percentile_ms(99):,.0f}"

    a, b = baseline["burst"], main["burst"]
    paced = main.get("paced")
    rows = [
        ("burst requests", f"{a.requests}", f"{b.requests}"),
        ("burst orders/s", f"{a.rate:,.1f}", f"{b.rate:,.1f}"),
        ("burst request→result p50 / p99 (ms)", latency(a), latency(b)),
        ("burst worker CPU per order", cpu(a), cpu(b)),
        ("paced rate (orders/s)", "-", "-" if paced is None else f"{paced.rate:,.1f}"),
        ("paced request→result p50 / p99 (ms)", "-", latency(paced)),
        ("paced worker CPU per order", "-", cpu(paced)),
    ]
    print()
    print(f"{'':38} {'(a) one per partition':>22} {'(b) orders worker':>20}")
    for label, left, right in rows:
        print(f"{label:38} {left:>22} {right:>20}")
    ratio = b.rate / a.rate if a.rate else 0.0
    cpu_b = b.cpu_per_order
    print()
    print(f"ratio b/a (orders/s):      {ratio:,.1f}×   target ≥ {RATIO_TARGET:g}×  "
          f"{'met' if ratio >= RATIO_TARGET else 'MISSED'}")  # fmt: skip
    if cpu_b is None:
        print("(b) CPU per order:         n/a (no /proc on this system)")
    else:
        print(f"(b) CPU per order:         {cpu_b * 1000:.3f} ms   target ≤ "
              f"{CPU_TARGET_SECONDS * 1000:g} ms  {'met' if cpu_b <= CPU_TARGET_SECONDS else 'MISSED'}")  # fmt: skip
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
    child_args = argparse.ArgumentParser()
    child_args.add_argument("--baseline-worker", type=int, required=True, metavar="PORT")
    run(_serve_baseline_worker(child_args.parse_args().baseline_worker))
