"""`pooul-worker bench trades`: the trades worker against a one-at-a-time-per-partition baseline.

Processes, all on this machine:
- a broker (embedded Tansu unless `KAFKA_BOOTSTRAP_SERVERS` is set);
- the sandbox (`pooul-worker sandbox`), every gateway call (so every query) delayed by L
  (default 100 ms);
- the ingress (`pooul-worker ingress`), which every notify goes through;
- the worker under test, a subprocess, so its CPU time is read from /proc and nothing else
  counts: (a) baseline — the same trades handler, one record at a time per partition (a
  classic consumer loop: at most partitions / L events/s); (b) `pooul-worker trades` itself;
- this process: creates and pays the orders, posts the signed notifies, and reads the
  events after each phase.

Before the clock, per worker (fresh topics, 8 partitions): the orders are created and paid in
the sandbox (without its own notifies) and their order-created signals consumed by the worker.
Then:
1. burst — every notify posted at once (`--concurrency` connections); events/s = N / (first
   notify posted → last event written); notify→event latency per trade (queueing included); CPU
   seconds of the worker over the same window / N. (a) gets `--baseline-trades`.
2. paced — (b) only: notifies at half of (b)'s burst rate (or `--paced-rate`) for
   `--paced-seconds`; latency from each notify's scheduled time: the notify→event latency of a
   worker that keeps up.
Per phase it also prints every process's CPU seconds (broker included) and the worker's mean
query / handler / ingress→event times, which show where the latency goes.

notify→event ends when the event is written: at the trade's confirmed-state record on the
changelog (its timestamp), which the worker writes only after the event's acks=all write
returned — an upper bound on the moment the event is in Kafka. Nothing reads the topics during
a phase (it polls the worker's event counter): the records are read back after it, so this
process's fetches cost the shared broker nothing while the worker is timed (the embedded
broker's fetches cost it CPU in proportion to the topic's length).

Every trade must get exactly one `succeeded` event (by id); the run fails otherwise.
Targets: (b)/(a) events/s ≥ 20×; (b) ≤ 1 ms CPU per confirmed event; paced p99 ≤ L + 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from yarl import URL

from worker.bench.harness import (
    ChildProcess,
    CpuMeter,
    LoadPhase,
    OnePerPartition,
    baseline_worker_port,
    bench_broker,
    bench_settings,
    collector_paused,
    percentile_ms,
    print_comparison,
    print_targets,
    set_sandbox_latency,
    settings_env,
    suffixed_topics,
    worker_argv,
    worker_command,
)
from worker.bench.httpload import deliver, post_request
from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

RATIO_TARGET = 20.0
CPU_TARGET_SECONDS = 0.001
LATENCY_SLACK_MS = 50.0
_PARTITIONS = 8
_MERCHANT_ID = "888100000007777"
_MERCHANT_KEY = "bench-trades-md5-key-0123456789"
_SETUP_CONCURRENCY = 200


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trades",
        help="trades worker vs one-at-a-time per partition, notifies through the ingress, "
        "queries against the sandbox with latency L",
        description="Prints confirmed events/s, notify→event latency p50/p99 and worker CPU "
        "seconds per event for a one-at-a-time-per-partition baseline and the trades worker.",
    )
    parser.add_argument("--trades", type=int, default=3000, help="paid trades for (b) (N)")
    parser.add_argument(
        "--baseline-trades", type=int, default=240, help="paid trades for the baseline (a)"
    )
    parser.add_argument("--latency-ms", type=float, default=100.0, help="sandbox latency L")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0, help="paced phase length (0 skips it)"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=0.0,
        help="paced notifies/s (default 0: half of (b)'s burst rate)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="connections posting notifies in the burst"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.trades < 1 or args.baseline_trades < 1 or args.latency_ms < 0:
        print("pooul-worker bench trades: --trades/--baseline-trades ≥ 1, --latency-ms ≥ 0")
        return 2
    if args.paced_seconds < 0 or args.paced_rate < 0 or args.concurrency < 1:
        print("pooul-worker bench trades: --paced-seconds/--paced-rate ≥ 0, --concurrency ≥ 1")
        return 2
    return run(_bench(args, settings))


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Phase(LoadPhase):
    """One phase against one worker (`count` = trades); `others` = CPU seconds of the other
    processes."""

    others: dict[str, float] = field(default_factory=dict)
    inside: str = ""  # mean ms of the worker's own timings over the phase
    # `latencies` end when the event is written; cut where the ingress wrote the notify (its
    # signal record's timestamp) and where the worker confirmed the trade (the event's
    # `confirmed_at`): notify posted → in Kafka (the ingress), → confirmed (the hop to the
    # worker, the query), → written (the event's acks=all write).
    to_ingress: list[float] = field(default_factory=list)
    ingress_answered: list[float] = field(default_factory=list)  # notify → `success` (acks=all)
    to_confirmed: list[float] = field(default_factory=list)

    def split_ms(self) -> str:
        def cell(latencies: list[float]) -> str:
            return f"{percentile_ms(latencies, 50):,.0f} / {percentile_ms(latencies, 99):,.0f}"

        def legs(ends: list[float], starts: list[float]) -> list[float]:
            return [end - start for end, start in zip(ends, starts, strict=True)]

        return (
            f"notify→ingress wrote it {cell(self.to_ingress)} (answered `success` "
            f"{cell(self.ingress_answered)}), →confirmed "
            f"{cell(legs(self.to_confirmed, self.to_ingress))}, →event written "
            f"{cell(legs(self.latencies, self.to_confirmed))}"
        )


_TIMED = (
    ("query", b"pooul_trades_query_seconds"),
    ("handler", b"pooul_runtime_handler_duration_seconds"),
    ("ingress→event", b"pooul_trades_notify_to_event_seconds"),
)


async def _histogram_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of the worker's timing histograms, to split a phase's latency."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
        text = await response.read()
    totals: dict[str, tuple[float, float]] = {}
    for label, name in _TIMED:
        total = count = 0.0
        for row in text.splitlines():
            if row.startswith(name + b"_sum"):
                total += float(row.split()[-1])
            elif row.startswith(name + b"_count"):
                count += float(row.split()[-1])
        totals[label] = (total, count)
    return totals


def _mean_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> str:
    parts = []
    for label, _ in _TIMED:
        total = after[label][0] - before[label][0]
        count = after[label][1] - before[label][1]
        if count:
            parts.append(f"{label} {total / count * 1000:,.0f}")
    return ", ".join(parts)


# --- the baseline worker --------------------------------------------------------------------


async def _serve_baseline_worker(port: int) -> None:
    """(a): the trades handler behind one lock per partition — one record at a time each."""
    from worker.logs import configure_logging
    from worker.pooul import PooulClient
    from worker.runtime import StreamProcessor, run_worker
    from worker.settings import load_settings
    from worker.trades.handler import TradesHandler
    from worker.trades.metrics import TradesMetrics

    settings = load_settings()
    configure_logging(settings.pooul_log_level, settings.pooul_log_format)
    metrics = TradesMetrics()
    async with PooulClient.from_settings(settings) as client:
        handler = TradesHandler(settings=settings, client=client, metrics=metrics)
        processor = StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_trade_signals,
            group_id=settings.pooul_trades_group_id,
            handler=OnePerPartition(handler),
            state_topic=settings.pooul_topic_trade_state,
            name="trades-baseline",
            registry=metrics.registry,
        )
        await run_worker(processor, port=port)


# --- load -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Trade:
    trade_id: str
    mch_trade_id: str
    total_fee: int
    notify: bytes  # the signed notify body the platform would send


class _Load:
    """Prepares paid trades, posts their notifies to the ingress, reads back what was written."""

    def __init__(self, settings: Settings, *, sandbox_url: str, ingress_url: str) -> None:
        import aiohttp

        from worker.kafka import make_producer
        from worker.pooul import PooulClient

        self._settings = settings
        self._sandbox_url = sandbox_url
        self._notify_url = f"{ingress_url}/pooul/notify"
        self._client = PooulClient.from_settings(settings)
        self._producer = make_producer(settings, linger_ms=5)
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=_SETUP_CONCURRENCY))
        self.posted_at: dict[str, float] = {}
        self.events: dict[str, tuple[str, str]] = {}  # trade_id → (event id, type)
        self.confirmed_at: dict[str, float] = {}  # trade_id → the event's confirmed_at (Unix s)
        self.written_at: dict[str, float] = {}  # trade_id → its confirmed state written (Unix s)
        self.ingress_at: dict[str, float] = {}  # trade_id → its notify written by the ingress
        self.ingress_answered: dict[str, float] = {}  # trade_id → notify → `success` (s)
        self.event_count = 0
        self._serial = 0

    async def start(self) -> None:
        await self._client.start()
        await self._producer.start()

    async def prepare(self, count: int, *, worker_metrics_url: str) -> list[_Trade]:
        """`count` orders created and paid on the sandbox, their order-created signals sent and
        consumed by the worker (so the clock measures notify handling only)."""
        from schemas.pooul import UnifiedOrderRequest
        from schemas.signals import KIND_HEADER, MERCHANT_HEADER, OrderCreatedSignal
        from worker.pooul.signing import sign

        semaphore = asyncio.Semaphore(_SETUP_CONCURRENCY)
        run = uuid.uuid4().hex[:8]

        async def one(n: int) -> _Trade:
            mch_trade_id = f"B{run}{n:07d}"
            total_fee = 100 + n % 900
            async with semaphore:
                created = await self._client.create_order(
                    UnifiedOrderRequest(
                        merchant_id=_MERCHANT_ID,
                        mch_trade_id=mch_trade_id,
                        body="云南普洱 357g",
                        total_fee=total_fee,
                        spbill_create_ip="10.20.30.40",
                        notify_url=self._notify_url,
                        buyer_id="2088102146225135",
                    )
                )
                url = f"{self._sandbox_url}/sandbox/orders/{created.trade_id}/pay"
                async with self._http.post(url, data=b'{"notify": false}') as response:
                    if response.status != 200:
                        raise RuntimeError(f"sandbox pay: {await response.text()}")
                    order = await response.json(loads=orjson.loads)
            data = {
                "merchant_id": _MERCHANT_ID,
                "trade_id": created.trade_id,
                "mch_trade_id": mch_trade_id,
                "pay_type": "alipay.jsapi",
                "trade_state": 0,
                "total_fee": total_fee,
                "fee_type": "CNY",
                "time_end": order["time_end"],
                "out_trade_id": order["out_trade_id"],
                "ch_trade_id": order["ch_trade_id"],
                "nonce_str": uuid.uuid4().hex,
            }
            body = {
                "code": 0,
                "msg": None,
                "data": data,
                "version": "1.0",
                "sign_type": "md5",
                "sign": sign(data, _MERCHANT_KEY),
            }
            return _Trade(created.trade_id, mch_trade_id, total_fee, orjson.dumps(body))

        start = self._serial
        self._serial += count
        trades = list(await asyncio.gather(*(one(n) for n in range(start, start + count))))
        topic = self._settings.pooul_topic_trade_signals
        now = datetime.now(UTC)
        expires = datetime.fromtimestamp(time.time() + 3600, UTC)
        futures = []
        for trade in trades:
            signal = OrderCreatedSignal(
                trade_id=trade.trade_id,
                merchant_id=_MERCHANT_ID,
                mch_trade_id=trade.mch_trade_id,
                total_fee=trade.total_fee,
                expires_at=expires,
                created_at=now,
            )
            futures.append(
                await self._producer.send(
                    topic,
                    signal.model_dump_json().encode(),
                    key=trade.trade_id.encode(),
                    headers=[(KIND_HEADER, b"order_created"), (MERCHANT_HEADER, b"bench")],
                )
            )
        await asyncio.gather(*futures)
        await self._wait_metric(
            worker_metrics_url,
            b'pooul_trades_signals_total{kind="order_created"}',
            expected=start + count,
            within=120.0,
            what="order-created signals consumed",
        )
        return trades

    async def _wait_metric(
        self, metrics_url: str, line: bytes, *, expected: int, within: float, what: str
    ) -> None:
        """Until the worker's counter `line` reaches `expected` (polled every 100 ms)."""
        deadline = time.monotonic() + within
        seen = 0.0
        while True:
            async with self._http.get(metrics_url) as response:
                text = await response.read()
            for row in text.splitlines():
                if row.startswith(line):
                    seen = float(row.split()[-1])
            if seen >= expected:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {seen:.0f} of {expected} after {within:.0f} s")
            await asyncio.sleep(0.1)

    async def post(
        self, trades: list[_Trade], *, rate: float | None = None, concurrency: int = 64
    ) -> None:
        """Post every trade's notify to the ingress once, all at once or at `rate` per second.

        Through `httpload` connections rather than aiohttp's client, which costs this process
        several times the CPU per request: on two shared cores that CPU is taken from the
        processes under test and shows up in their latency.
        """
        url = URL(self._notify_url)
        sent = await deliver(
            host=url.host or "127.0.0.1",
            port=url.port or 80,
            requests=[post_request(url.path, trade.notify) for trade in trades],
            rate=rate,
            concurrency=concurrency,
        )
        for trade, at, answered in zip(trades, sent.sent_at, sent.answered_at, strict=True):
            self.posted_at[trade.trade_id] = at
            self.ingress_answered[trade.trade_id] = answered - at

    async def wait(self, trades: list[_Trade], *, worker_metrics_url: str, within: float) -> None:
        """Until the worker counts an event per trade: its metrics, not the events topic, so
        this process costs the shared broker no fetch while the worker is timed."""
        await self._wait_metric(
            worker_metrics_url,
            b'pooul_trades_events_total{type="com.pooul.payment.succeeded"}',
            expected=len(trades),
            within=within,
            what="events published",
        )

    async def read_back(self, trades: list[_Trade]) -> None:
        """After the phase: the events, and from the records' timestamps when the ingress wrote
        each trade's notify (its first notify signal) and when the worker wrote its confirmed
        state (its first changelog record from the event's `confirmed_at` on; the order-created
        state was written before the clock)."""
        from schemas.signals import KIND_HEADER

        def on_event(record: Any) -> None:
            event = orjson.loads(record.value)
            self.event_count += 1
            trade_id = event["data"]["trade_id"]
            if trade_id not in self.events:
                self.events[trade_id] = (event["id"], event["type"])
                confirmed = datetime.fromisoformat(event["data"]["confirmed_at"])
                self.confirmed_at[trade_id] = confirmed.timestamp()

        await self._read_whole(self._settings.pooul_topic_payment_events, on_event)
        missing = sum(1 for t in trades if t.trade_id not in self.events)
        if missing:
            raise RuntimeError(f"no event for {missing} trades")

        confirmed_ms = {
            t.trade_id.encode(): int(self.confirmed_at[t.trade_id] * 1000) for t in trades
        }
        notify = (KIND_HEADER, b"notify")

        def earliest(into: dict[str, float], key: bytes, timestamp_ms: int) -> None:
            at = timestamp_ms / 1000
            into[key.decode()] = min(into.get(key.decode(), at), at)

        def on_state(record: Any) -> None:
            since = confirmed_ms.get(record.key or b"")
            if since is not None and record.timestamp >= since:
                earliest(self.written_at, record.key, record.timestamp)

        def on_signal(record: Any) -> None:
            if record.key in confirmed_ms and notify in record.headers:
                earliest(self.ingress_at, record.key, record.timestamp)

        await self._read_whole(self._settings.pooul_topic_trade_state, on_state)
        await self._read_whole(self._settings.pooul_topic_trade_signals, on_signal)
        for name, seen in (("confirmed state", self.written_at), ("notify", self.ingress_at)):
            missing = sum(1 for t in trades if t.trade_id not in seen)
            if missing:
                raise RuntimeError(f"no {name} written for {missing} trades")

    async def _read_whole(self, topic: str, on_record: Callable[[Any], None]) -> None:
        """Every record of `topic` up to its current end, oldest first per partition."""
        from aiokafka import TopicPartition

        from worker.kafka import make_consumer
        from worker.lag import high_watermarks

        tps = [TopicPartition(topic, p) for p in range(_PARTITIONS)]
        consumer = make_consumer(self._settings, group_id=None)
        await consumer.start()
        try:
            # The high watermarks, not ListOffsets: on the embedded broker that names the last
            # batch's base offset + 1, and the loop would stop inside that batch.
            ends = {tp: end for tp, end in (await high_watermarks(consumer, tps)).items() if end}
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while ends:
                for tp, records in (await consumer.getmany(*ends, timeout_ms=200)).items():
                    for record in records:
                        on_record(record)
                    if await consumer.position(tp) >= ends[tp]:
                        del ends[tp]
        finally:
            await consumer.stop()

    def phase(self, trades: list[_Trade], *, cpu: float | None) -> Phase:
        """The phase's numbers; its clock starts at the first notify sent (after connecting)."""
        wall = time.time() - time.perf_counter()  # confirmed_at and written_at are wall-clock
        posted = [self.posted_at[t.trade_id] + wall for t in trades]
        return Phase(
            count=len(trades),
            seconds=max(self.written_at[t.trade_id] for t in trades) - min(posted),
            latencies=[
                self.written_at[t.trade_id] - at for t, at in zip(trades, posted, strict=True)
            ],
            cpu=cpu,
            to_ingress=[
                self.ingress_at[t.trade_id] - at for t, at in zip(trades, posted, strict=True)
            ],
            ingress_answered=[self.ingress_answered[t.trade_id] for t in trades],
            to_confirmed=[
                self.confirmed_at[t.trade_id] - at for t, at in zip(trades, posted, strict=True)
            ],
        )

    def check(self, trades: list[_Trade]) -> list[str]:
        """Problems: every trade exactly one succeeded event with its deterministic id."""
        from schemas.trade_state import TradeState
        from worker.trades.events import event_id

        problems = []
        for trade in trades:
            got_id, got_type = self.events[trade.trade_id]
            if got_type != "com.pooul.payment.succeeded":
                problems.append(f"{trade.trade_id}: {got_type}")
            if got_id != event_id(_MERCHANT_ID, trade.trade_id, TradeState.PAID):
                problems.append(f"{trade.trade_id}: unexpected id {got_id}")
        return problems

    async def stop(self) -> None:
        await self._producer.stop()
        await self._client.stop()
        await self._http.close()


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
            # No reconciliation check falls inside the run: only notifies drive it.
            pooul_reconcile_schedule="3600",
            pooul_max_in_flight=max(settings.pooul_max_in_flight, 2000),
        )
        print(
            f"broker: {broker.describe()}, consumers' fetch wait {base.pooul_fetch_max_wait_ms} ms"
        )
        print(
            f"sandbox latency L = {args.latency_ms:g} ms, {_PARTITIONS} partitions, "
            f"N = {args.trades} (baseline {args.baseline_trades}), {os.cpu_count()} CPUs"
        )
        # The embedded broker's CPU is reported too (it shares the CPUs with everything else).
        measured = {"broker": broker.pid} if broker.pid is not None else {}
        sandbox = ChildProcess(
            name="sandbox",
            argv=worker_command("sandbox", port=(port := free_port())),
            env=settings_env(base),
            port=port,
        )
        try:
            await sandbox.wait_ready("/sandbox/health")
            common: dict[str, Any] = {"sandbox": sandbox, "args": args, "measured": measured}
            baseline = await _run_worker(base, baseline=True, count=args.baseline_trades, **common)
            print(f"(a) baseline: {baseline.rate:,.1f} events/s")
            burst = await _run_worker(base, baseline=False, count=args.trades, **common)
            print(f"(b) burst: {burst.rate:,.1f} events/s")
            paced = None
            if args.paced_seconds:
                rate = args.paced_rate or burst.rate / 2
                count = max(1, int(rate * args.paced_seconds))
                paced = await _run_worker(base, baseline=False, count=count, rate=rate, **common)
        finally:
            await sandbox.stop()
    return _report(baseline, burst, paced, latency_ms=args.latency_ms)


async def _run_worker(
    base: Settings,
    *,
    sandbox: ChildProcess,
    args: argparse.Namespace,
    baseline: bool,
    count: int,
    rate: float | None = None,
    measured: dict[str, int],
) -> Phase:
    """One phase — `count` notifies all at once, or at `rate` per second — against a fresh
    worker and ingress on fresh topics.

    Fresh topics per phase because the embedded broker's fetch costs CPU in proportion to the
    partition's length (it scans its in-memory log: ~0.3 ms per record read at the tail of a
    3,000-record topic, ~1.3 ms at 18,000): on the burst's topics the paced phase would mostly
    measure that broker, not the worker.
    """
    from worker.broker import free_port
    from worker.topics import create_topics

    suffix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            **suffixed_topics(base, suffix),
            "pooul_base_url": sandbox.url,
            "pooul_trades_group_id": f"trades-{suffix}",
        }
    )
    await create_topics(settings)
    env = settings_env(settings)
    worker = ChildProcess(
        name="trades-baseline" if baseline else "trades",
        argv=worker_argv(command="trades", baseline=baseline, port=(port := free_port())),
        env=env,
        port=port,
    )
    ingress = ChildProcess(
        name="ingress",
        argv=worker_command("ingress", port=(iport := free_port())),
        env={**env, "POOUL_INGRESS_HOST": "127.0.0.1"},
        port=iport,
    )
    load = _Load(settings, sandbox_url=sandbox.url, ingress_url=ingress.url)
    metrics_url = f"{worker.url}/metrics"

    async def phase() -> Phase:
        """`count` trades prepared without latency (every query of the phase then pays L),
        posted, timed until their last event."""
        await set_sandbox_latency(sandbox.url, 0)
        trades = await load.prepare(count, worker_metrics_url=metrics_url)
        await set_sandbox_latency(sandbox.url, args.latency_ms)
        timed = await _histogram_totals(metrics_url)
        others = CpuMeter(ingress=ingress.pid, sandbox=sandbox.pid, **measured)
        cpu = CpuMeter(worker=worker.pid)
        with collector_paused():  # this process's own GC pauses would count as event latency
            await load.post(trades, rate=rate, concurrency=args.concurrency)
            await load.wait(trades, worker_metrics_url=metrics_url, within=max(120.0, count * 0.05))
        worker_cpu, others_cpu = cpu.read().get("worker"), others.read()
        result_inside = _mean_ms(timed, await _histogram_totals(metrics_url))
        await asyncio.sleep(0.5)  # late repeats, if any, would show up in the count
        await load.read_back(trades)
        result = load.phase(trades, cpu=worker_cpu)
        result.others, result.inside = others_cpu, result_inside
        problems = load.check(trades)
        if problems or load.event_count != len(trades):
            raise RuntimeError(
                f"{len(problems)} wrong events ({problems[:3]}), {load.event_count} events "
                f"for {len(trades)} trades"
            )
        return result

    try:
        await worker.wait_ready("/readyz")
        await ingress.wait_ready("/readyz")
        await load.start()
        return await phase()
    finally:
        await load.stop()
        await ingress.stop()
        await worker.stop()


def _report(a: Phase, b: Phase, paced: Phase | None, *, latency_ms: float) -> int:
    print_comparison(
        a,
        b,
        paced,
        width=36,
        title_b="(b) trades worker",
        count_label="paid trades",
        rate_label="confirmed events",
        unit="events",
        latency_label="notify→event written",
        item="event",
    )
    print_targets(
        a,
        b,
        width=29,
        unit="events",
        item="event",
        ratio_target=RATIO_TARGET,
        cpu_target_seconds=CPU_TARGET_SECONDS,
    )
    if paced is not None:
        p99, bound = paced.percentile_ms(99), latency_ms + LATENCY_SLACK_MS
        print(f"paced p99 notify→written:    {p99:,.1f} ms   target ≤ L + {LATENCY_SLACK_MS:g} = "
              f"{bound:g} ms  {'met' if p99 <= bound else 'MISSED'}")  # fmt: skip
    for label, phase in (("burst", b), ("paced", paced)):
        if phase is None or not phase.others or phase.cpu is None:
            continue
        spent = {"worker": phase.cpu, **phase.others}
        total = sum(spent.values())
        shares = ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())
        print(
            f"(b) {label} CPU seconds: {shares} = {total:.1f} of "
            f"{(os.cpu_count() or 1) * phase.seconds:.1f} available ({os.cpu_count()} CPUs × "
            f"{phase.seconds:.1f} s)"
        )
        if phase.inside:
            print(f"(b) {label} worker means (ms): {phase.inside}")
        print(f"(b) {label} latency split p50 / p99 (ms): {phase.split_ms()}")
    print("events: every trade exactly one `succeeded` event with its deterministic id")
    return 0


if __name__ == "__main__":
    # `python -m worker.bench.trades --baseline-worker PORT`: the baseline worker process (a).
    run(_serve_baseline_worker(baseline_worker_port()))
