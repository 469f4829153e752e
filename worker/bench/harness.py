"""What the benchmarks share: the broker, child processes, the baseline wrapper, measurements.

Every benchmark runs the thing under test in a subprocess (so its CPU time, read from /proc,
counts nothing else) against a broker this process starts, and compares it with a baseline
measured in the same invocation. The pieces here keep those runs alike across benchmarks:

    async with bench_broker() as broker:
        child = ChildProcess(name="sandbox", argv=worker_command("sandbox", port=port),
                             env=settings_env(settings), port=port)
        await child.wait_ready("/sandbox/health")
        cpu = CpuMeter(worker=child.pid)
        ...
        await child.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from worker.runtime import Handler, KeyContext, Record
from worker.settings import Settings

__all__ = [
    "BenchBroker",
    "ChildProcess",
    "CpuMeter",
    "LoadPhase",
    "OnePerPartition",
    "baseline_worker_port",
    "bench_broker",
    "bench_settings",
    "cpu_ms",
    "p50_p99",
    "percentile_ms",
    "print_comparison",
    "print_targets",
    "process_cpu",
    "set_sandbox_latency",
    "settings_env",
    "suffixed_topics",
    "worker_argv",
    "worker_command",
]


# --- measurements ---------------------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile_ms(latencies: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank, no interpolation) of latencies in seconds, in ms."""
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


class CpuMeter:
    """CPU seconds used since creation by named processes, and by this one (`bench`).

    A process whose CPU time cannot be read (no /proc) is left out of `read()`.
    """

    def __init__(self, **pids: int) -> None:
        self._pids = pids
        self._start = {name: process_cpu(pid) for name, pid in pids.items()}
        self._bench = time.process_time()

    def read(self) -> dict[str, float]:
        used = {"bench": time.process_time() - self._bench}
        for name, pid in self._pids.items():
            start, now = self._start[name], process_cpu(pid)
            if start is not None and now is not None:
                used[name] = now - start
        return used


@dataclass
class LoadPhase:
    """One timed phase against one worker: `count` items, each with its own latency."""

    count: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: float | None = None  # CPU seconds of the worker over the phase, None without /proc

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile_ms(self.latencies, p)

    @property
    def cpu_per_item(self) -> float | None:
        return None if self.cpu is None or not self.count else self.cpu / self.count


def p50_p99(phase: LoadPhase | None) -> str:
    """A table cell: `p50 / p99` in whole ms, `-` for a phase that did not run."""
    if phase is None:
        return "-"
    return f"{phase.percentile_ms(50):,.0f} / {phase.percentile_ms(99):,.0f}"


def cpu_ms(phase: LoadPhase | None) -> str:
    """A table cell: worker CPU per item in ms, `n/a` without /proc or a phase."""
    value = None if phase is None else phase.cpu_per_item
    return "n/a" if value is None else f"{value * 1000:.3f} ms"


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage-collection pause in this process while a phase is timed.

    The load generator stamps each request's send time and each answer's arrival; a collection
    here (3–25 ms, measured) would show up as latency of the processes under test. As `timeit`
    does, the collector is off while timing: startup objects are frozen first, and whatever
    cyclic garbage the phase leaves is collected after it.
    """
    from worker.heap import freeze_startup_heap

    freeze_startup_heap()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- broker and settings --------------------------------------------------------------------


@dataclass(frozen=True)
class BenchBroker:
    """The broker of a run: external (`KAFKA_BOOTSTRAP_SERVERS`) or an embedded Tansu."""

    bootstrap_servers: str
    external: bool
    pid: int | None = None  # the embedded broker's process, whose CPU a bench may report

    def describe(self) -> str:
        kind = "external" if self.external else "embedded Tansu"
        return f"{kind} {self.bootstrap_servers}"


@contextlib.asynccontextmanager
async def bench_broker() -> AsyncIterator[BenchBroker]:
    """The external broker if `KAFKA_BOOTSTRAP_SERVERS` is set, else an embedded one, stopped
    on exit (the benchmarks' numbers depend on which, so every bench prints it)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield BenchBroker(bootstrap_servers=external, external=True)
        return
    from worker.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    await broker.start()
    try:
        process = getattr(broker, "_process", None)
        yield BenchBroker(
            bootstrap_servers=broker.bootstrap_servers,
            external=False,
            pid=None if process is None else process.pid,
        )
    finally:
        await asyncio.to_thread(broker.stop_sync, 1.0)


def bench_settings(
    settings: Settings,
    *,
    broker: BenchBroker,
    merchant_id: str,
    merchant_key: str,
    partitions: int,
    **overrides: Any,
) -> Settings:
    """`settings` for a bench run: its broker, its one merchant, its partition count.

    On the embedded broker, consumers get the fetch wait `dev` gives them
    (`EMBEDDED_FETCH_MAX_WAIT_MS`) unless `POOUL_FETCH_MAX_WAIT_MS` is set: that broker holds a
    fetch for its whole wait, so the default would measure the wait, not the worker.
    """
    from worker.broker import EMBEDDED_FETCH_MAX_WAIT_MS

    tuning: dict[str, Any] = {}
    if not broker.external and "pooul_fetch_max_wait_ms" not in settings.model_fields_set:
        tuning["pooul_fetch_max_wait_ms"] = EMBEDDED_FETCH_MAX_WAIT_MS
    # A fresh Settings (not model_copy): the merchant keys are parsed by a validator.
    return Settings(
        **{
            **settings.model_dump(),
            **tuning,
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "pooul_merchant_keys": orjson.dumps({merchant_id: merchant_key}).decode(),
            "pooul_merchant_keys_file": None,
            "pooul_topic_partitions": partitions,
            **overrides,
        }
    )


def suffixed_topics(settings: Settings, suffix: str) -> dict[str, str]:
    """Overrides that give every topic `<name>.<suffix>`: fresh, empty topics for one worker."""
    return {f"pooul_topic_{name}": f"{topic}.{suffix}" for name, topic in settings.topics().items()}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOUL_", "KAFKA_"))}
    for name, value in settings.model_dump().items():
        if value is None or name == "pooul_merchant_keys":
            continue
        env[name.upper()] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env["POOUL_MERCHANT_KEYS"] = settings.merchant_keys.as_json()
    env["POOUL_LOG_LEVEL"] = "WARNING"
    return env


async def set_sandbox_latency(url: str, latency_ms: float) -> None:
    """Delay every sandbox gateway call by `latency_ms` (the L of the worker benchmarks)."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/sandbox/faults", json={"latency_ms": latency_ms}) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"sandbox refused the latency: {await response.text()}")


# --- child processes ------------------------------------------------------------------------


def worker_command(command: str, *, port: int, extra: Sequence[str] = ()) -> list[str]:
    """argv of `pooul-worker <command> [extra] --port <port>` with this interpreter."""
    return [sys.executable, "-m", "worker", command, *extra, "--port", str(port)]


def worker_argv(*, command: str, baseline: bool, port: int) -> list[str]:
    """argv of the worker under test: `pooul-worker <command>`, or its baseline, which
    `worker.bench.<command>` serves when run as `--baseline-worker PORT`."""
    if baseline:
        return [sys.executable, "-m", f"worker.bench.{command}", "--baseline-worker", str(port)]
    return worker_command(command, port=port)


def baseline_worker_port() -> int:
    """The PORT of `python -m worker.bench.<name> --baseline-worker PORT`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-worker", type=int, required=True, metavar="PORT")
    port: int = parser.parse_args().baseline_worker
    return port


class ChildProcess:
    """A subprocess on `port` with its output in a temporary log file, ready when a path
    answers 200, stopped by SIGTERM (SIGKILL after 20 s); the log is gone after `stop()`."""

    def __init__(
        self,
        *,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        ready_within: float = 60.0,
    ) -> None:
        self.name = name
        self.port = port
        self._ready_within = ready_within
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

        deadline = time.monotonic() + self._ready_within
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + path) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready in {self._ready_within:g} s: {self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    def log_tail(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-2000:]

    def startup_log(self) -> str:
        """The first 20,000 characters of the log (where a server says how it started)."""
        with open(self._log.name, errors="replace") as log:
            return log.read(20_000)

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self._log.close()


# --- the baseline ---------------------------------------------------------------------------


class OnePerPartition:
    """A worker's own handler behind one lock per partition: one record (or timer) at a time
    each — the shape of a classic consumer loop, capped at partitions / L records/s."""

    def __init__(self, inner: Handler) -> None:
        self._inner = inner
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        async with self._locks[ctx.partition]:
            await self._inner.handle(record, ctx)

    async def on_timer(self, ctx: KeyContext) -> None:
        async with self._locks[ctx.partition]:
            await self._inner.on_timer(ctx)


# --- the report -----------------------------------------------------------------------------


def print_comparison(
    a: LoadPhase,
    b: LoadPhase,
    paced: LoadPhase | None,
    *,
    width: int,
    title_b: str,
    count_label: str,
    rate_label: str,
    unit: str,
    latency_label: str,
    item: str,
) -> None:
    """The table of a worker benchmark: (a) baseline burst vs (b) worker burst and paced.

    `unit` names the rate (`orders` → orders/s), `item` the CPU divisor (CPU per `order`).
    """
    rows = [
        (f"burst {count_label}", f"{a.count}", f"{b.count}"),
        (f"burst {rate_label}/s", f"{a.rate:,.1f}", f"{b.rate:,.1f}"),
        (f"burst {latency_label} p50 / p99 (ms)", p50_p99(a), p50_p99(b)),
        (f"burst worker CPU per {item}", cpu_ms(a), cpu_ms(b)),
        (f"paced rate ({unit}/s)", "-", "-" if paced is None else f"{paced.rate:,.1f}"),
        (f"paced {latency_label} p50 / p99 (ms)", "-", p50_p99(paced)),
        (f"paced worker CPU per {item}", "-", cpu_ms(paced)),
    ]
    print()
    print(f"{'':{width}} {'(a) one per partition':>22} {title_b:>20}")
    for label, left, right in rows:
        print(f"{label:{width}} {left:>22} {right:>20}")


def print_targets(
    a: LoadPhase,
    b: LoadPhase,
    *,
    width: int,
    unit: str,
    item: str,
    ratio_target: float,
    cpu_target_seconds: float,
) -> None:
    """The two targets every worker benchmark has: (b)/(a) rate, and (b)'s CPU per item."""
    ratio = b.rate / a.rate if a.rate else 0.0
    cpu_b = b.cpu_per_item
    print()
    print(f"{f'ratio b/a ({unit}/s):':{width}}{ratio:,.1f}×   target ≥ {ratio_target:g}×  "
          f"{'met' if ratio >= ratio_target else 'MISSED'}")  # fmt: skip
    if cpu_b is None:
        print(f"{f'(b) CPU per {item}:':{width}}n/a (no /proc on this system)")
    else:
        print(f"{f'(b) CPU per {item}:':{width}}{cpu_b * 1000:.3f} ms   target ≤ "
              f"{cpu_target_seconds * 1000:g} ms  {'met' if cpu_b <= cpu_target_seconds else 'MISSED'}")  # fmt: skip
