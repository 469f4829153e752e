"""Prometheus metrics of one processor, in its own `CollectorRegistry`.

Counters are updated as things happen; gauges that describe the live situation (in-flight,
oldest unfinished record, commit lag, circuit state) are read from a snapshot at scrape time,
so they are never stale. Every name starts with `pooul_runtime_`, every sample has a `worker`
label (the processor name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["PartitionSnapshot", "RuntimeMetrics", "RuntimeSnapshot"]


@dataclass(frozen=True)
class PartitionSnapshot:
    partition: int
    ready: bool
    unfinished: int
    oldest_unfinished_age: float
    committed: int | None
    highwater: int | None
    state_keys: int
    stalled: bool

    @property
    def commit_lag(self) -> int | None:
        """Records past the committed offset (handled or not): what a crash would redo or do."""
        if self.highwater is None or self.committed is None:
            return None
        return max(0, self.highwater - self.committed)


@dataclass(frozen=True)
class RuntimeSnapshot:
    phase: str
    in_flight: int
    max_in_flight: int
    circuit_state: int
    assigned: bool
    restoring: bool
    partitions: list[PartitionSnapshot] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return not self.problems

    @property
    def ready(self) -> bool:
        return self.live and self.phase == "running" and self.assigned and not self.restoring


class RuntimeMetrics:
    """The processor's counters and histograms, plus a scrape-time collector for its gauges."""

    def __init__(self, *, registry: CollectorRegistry, worker: str) -> None:
        self.registry = registry
        self.worker = worker
        labels = ["worker"]
        self.records = Counter(
            "pooul_runtime_records",
            "Input records finished, by outcome (ok, dead_lettered) or abandoned on revoke/stop",
            [*labels, "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "pooul_runtime_retries",
            "Handler attempts that will be retried, by kind (retry, remote_unavailable, error)",
            [*labels, "kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "pooul_runtime_dead_letters",
            "Dead letters written, by source kind (record, timer) and outcome",
            [*labels, "kind", "outcome"],
            registry=registry,
        )
        for kind in ("record", "timer"):  # zeros, not gaps: an alert sees the first letter
            for outcome in ("permanent", "retries_exhausted"):
                self.dead_letters.labels(worker, kind, outcome)
        self.timers = Counter(
            "pooul_runtime_timers",
            "Timer firings, by outcome (ok, dead_lettered, stale)",
            [*labels, "outcome"],
            registry=registry,
        )
        self.expired = Counter(
            "pooul_runtime_state_expired",
            "State entries expired (tombstone written)",
            labels,
            registry=registry,
        )
        self.commits = Counter(
            "pooul_runtime_commits",
            "Offset commits, by result (ok, failed)",
            [*labels, "result"],
            registry=registry,
        )
        self.circuit_opened = Counter(
            "pooul_runtime_circuit_opened",
            "Times the circuit breaker opened",
            labels,
            registry=registry,
        )
        self.rebalances = Counter(
            "pooul_runtime_rebalances",
            "Partition assignment changes, by event (assigned, revoked)",
            [*labels, "event"],
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "pooul_runtime_restore_duration_seconds",
            "Time to restore the state of newly assigned partitions from the changelog",
            labels,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.restore_records = Counter(
            "pooul_runtime_restore_records",
            "Changelog records read by restores",
            labels,
            registry=registry,
        )
        self.restore_bytes = Counter(
            "pooul_runtime_restore_bytes",
            "Bytes of changelog values read by restores",
            labels,
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "pooul_runtime_handler_duration_seconds",
            "Duration of one handler call (records and timers)",
            labels,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        # Bound children: labels() costs a dict lookup and a lock per call.
        self.ok = self.records.labels(worker, "ok")
        self.dead_lettered = self.records.labels(worker, "dead_lettered")
        self.abandoned = self.records.labels(worker, "abandoned")
        self.handler_time = self.handler_seconds.labels(worker)

    def watch(self, snapshot: Callable[[], RuntimeSnapshot]) -> None:
        """Register the scrape-time gauges, read from `snapshot()`."""
        self.registry.register(_SnapshotCollector(self.worker, snapshot))


class _SnapshotCollector(Collector):
    def __init__(self, worker: str, snapshot: Callable[[], RuntimeSnapshot]) -> None:
        self._worker = worker
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        w = [self._worker]
        wp = ["worker", "partition"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["worker"])
            family.add_metric(w, value)
            return family

        yield gauge(
            "pooul_runtime_in_flight", "Records and timer firings held right now", snap.in_flight
        )
        yield gauge("pooul_runtime_max_in_flight", "The in-flight budget", snap.max_in_flight)
        yield gauge(
            "pooul_runtime_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            snap.circuit_state,
        )
        yield gauge("pooul_runtime_live", "1 when /healthz passes", 1.0 if snap.live else 0.0)
        yield gauge("pooul_runtime_ready", "1 when /readyz passes", 1.0 if snap.ready else 0.0)
        oldest = GaugeMetricFamily(
            "pooul_runtime_oldest_unfinished_age_seconds",
            "Age of the lowest unfinished record per partition (0 when none)",
            labels=wp,
        )
        unfinished = GaugeMetricFamily(
            "pooul_runtime_unfinished_records", "Admitted records not finished yet", labels=wp
        )
        lag = GaugeMetricFamily(
            "pooul_runtime_commit_lag_records",
            "Highwater minus committed offset per partition (what a crash would redo or do)",
            labels=wp,
        )
        keys = GaugeMetricFamily(
            "pooul_runtime_state_keys", "State entries per partition", labels=wp
        )
        stalled = GaugeMetricFamily(
            "pooul_runtime_partition_stalled", "1 when the partition makes no progress", labels=wp
        )
        for part in snap.partitions:
            lv = [self._worker, str(part.partition)]
            oldest.add_metric(lv, part.oldest_unfinished_age)
            unfinished.add_metric(lv, part.unfinished)
            if part.commit_lag is not None:
                lag.add_metric(lv, part.commit_lag)
            keys.add_metric(lv, part.state_keys)
            stalled.add_metric(lv, 1.0 if part.stalled else 0.0)
        yield from (oldest, unfinished, lag, keys, stalled)
