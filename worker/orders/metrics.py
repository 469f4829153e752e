"""Prometheus metrics of the orders worker (`pooul_orders_*`), on a registry passed in.

One `OrdersMetrics` per worker instance, so several can live in one test process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["OrdersMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OrdersMetrics:
    """Counters and histograms of one orders worker; several may share a process (tests).

    - `pooul_orders_results_total{outcome, path}` — outcome `created|rejected|failed`; path
      `new` (platform created it), `repeat` (answered from state), `recovered` (107 → query),
      `validation`, `platform_refused`, `conflict`, `retries_exhausted`.
    - `pooul_orders_platform_latency_seconds{call, outcome}` — call `pay|query`; outcome `ok`
      or the error class (`DuplicateOrder`, `PooulTimeout`, ...).
    - `pooul_orders_retries_total{reason}` — a platform call will be tried again (`timeout`,
      `transport`, `bad_signature`, `retryable_code`, `malformed_answer`, `not_found_after_duplicate`,
      `http_refused`).
    - `pooul_orders_conflicts_total{source}` — `state` or `platform`.
    """

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "pooul_orders_results",
            "Order results produced, by outcome and by how it was reached.",
            ["outcome", "path"],
            registry=registry,
        )
        self.platform_latency = Histogram(
            "pooul_orders_platform_latency_seconds",
            "Duration of Pooul gateway calls made by the orders worker.",
            ["call", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "pooul_orders_retries",
            "Platform calls that failed in a retryable way and will be tried again.",
            ["reason"],
            registry=registry,
        )
        self.conflicts = Counter(
            "pooul_orders_conflicts",
            "Requests whose mch_trade_id already named a different order.",
            ["source"],
            registry=registry,
        )
