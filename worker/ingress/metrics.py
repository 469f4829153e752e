"""Prometheus metrics of one ingress, in its own registry (several ingresses can share a process).

    metrics = IngressMetrics()
    metrics.outcome("success")               # pooul_ingress_requests_total{outcome="success"}
    body = metrics.exposition()              # what GET /metrics returns

Every name starts with `pooul_ingress_`; docs/ingress.md lists them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from worker.ingress.errors import PublishError, PublishTimeout, Reason

__all__ = ["CONTENT_TYPE", "OUTCOMES", "IngressMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every value the `outcome` label takes, pre-created so dashboards see zeros, not gaps.
OUTCOMES: tuple[str, ...] = (
    "success",
    *(reason.value for reason in Reason),
    PublishTimeout.reason,
    PublishError.reason,
    "internal_error",
    "cancelled",  # no answer at all: the shutdown grace ran out
)

# Produce latency on a local broker is a few ms; the tail up to the 4.5 s deadline matters too.
_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5)


class IngressMetrics:
    """Requests by outcome, produce latency, in-flight notifies, dropped records, readiness."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter(
            "pooul_ingress_requests",
            "Notify requests answered, by outcome (success or the rejection/failure reason).",
            ["outcome"],
            registry=self.registry,
        )
        self._by_outcome = {name: self._requests.labels(outcome=name) for name in OUTCOMES}
        self.produce_seconds = Histogram(
            "pooul_ingress_produce_seconds",
            "Time from handing a record to the producer to its acks=all acknowledgement.",
            buckets=_PRODUCE_BUCKETS,
            registry=self.registry,
        )
        # A plain counter the handler bumps, read at scrape time: exact, and no lock per request.
        self.requests_in_flight = 0
        self.in_flight = Gauge(
            "pooul_ingress_in_flight_requests",
            "Notify requests being handled right now.",
            registry=self.registry,
        )
        self.in_flight.set_function(lambda: float(self.requests_in_flight))
        self.dropped_records = Counter(
            "pooul_ingress_dropped_records",
            "Records not sent because every request of their batch had already been answered "
            "503 (the platform delivers those notifies again).",
            registry=self.registry,
        )
        self.broker_ready = Gauge(
            "pooul_ingress_broker_ready",
            "1 when the last broker probe found the topic's leaders reachable, else 0.",
            registry=self.registry,
        )

    def outcome(self, name: str) -> None:
        """Count one answered notify."""
        child = self._by_outcome.get(name)
        if child is None:  # not a known outcome: still counted, under its own label
            child = self._by_outcome[name] = self._requests.labels(outcome=name)
        child.inc()

    def count(self, name: str) -> float:
        """The current count for an outcome (tests and the benchmark read it)."""
        value = self.registry.get_sample_value("pooul_ingress_requests_total", {"outcome": name})
        return value or 0.0

    def in_flight_now(self) -> float:
        return self.registry.get_sample_value("pooul_ingress_in_flight_requests") or 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
