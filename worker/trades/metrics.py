"""Prometheus metrics of the trades worker, on a per-instance registry (several fit in one test).

metrics = TradesMetrics(registry=CollectorRegistry())
metrics.events.labels(type="com.pooul.payment.succeeded").inc()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from worker.trades.state import FLAG_REASONS

__all__ = ["TradesMetrics"]

# Query latency: sub-millisecond locally, up to the request timeout against the platform.
_QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Notify → event: a query plus two acknowledged writes when all goes well; retries take longer.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)


class TradesMetrics:
    """Every `pooul_trades_*` series. Keyword-only: `registry` (a fresh one when omitted)."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.signals = Counter(
            "pooul_trades_signals",
            "Trade signals received (retries of one record not counted again), by kind.",
            ["kind"],
            registry=r,
        )
        self.events = Counter(
            "pooul_trades_events",
            "Payment events published, by CloudEvents type.",
            ["type"],
            registry=r,
        )
        self.duplicates = Counter(
            "pooul_trades_duplicates_skipped",
            "Signals skipped because the trade already reached what they could report "
            "(signal = notify | order_created).",
            ["signal"],
            registry=r,
        )
        self.flagged_skips = Counter(
            "pooul_trades_flagged_signals_skipped",
            "Notifies for flagged trades, skipped (a flagged trade waits for a human).",
            registry=r,
        )
        self.operator_signals = Counter(
            "pooul_trades_operator_signals",
            "Operator signals handled (`pooul-worker trade recheck|resolve`), by kind and outcome "
            "(recheck: the decision taken — publish, flag, recheck, stale, abandon, ... — or "
            "not_found, unknown_trade; resolve: resolved, not_flagged, unknown_trade).",
            ["kind", "outcome"],
            registry=r,
        )
        self.disagreements = Counter(
            "pooul_trades_notify_query_disagreements",
            "Notifies that said paid while the query did not (forged or premature notifies).",
            registry=r,
        )
        self.mismatches = Counter(
            "pooul_trades_mismatches",
            "Answers contradicting the order (amount_mismatch, merchant_mismatch, "
            "mch_trade_id_mismatch, ...): trade flagged, evidence dead-lettered.",
            ["reason"],
            registry=r,
        )
        for reason in FLAG_REASONS:  # zeros, not gaps: an alert sees the first one
            self.mismatches.labels(reason=reason)
        self.stale_answers = Counter(
            "pooul_trades_stale_answers",
            "Query answers behind the published state (e.g. closed after paid), ignored.",
            registry=r,
        )
        self.overdue = Counter(
            "pooul_trades_pending_past_retry_span",
            "Trades still unconfirmed past the platform's notify retry span (counted once each).",
            registry=r,
        )
        self.unreadable_states = Counter(
            "pooul_trades_unreadable_states",
            "Reconciliation checks put off because the trade's stored entry could not be read "
            "(e.g. written by a newer release that was rolled back).",
            registry=r,
        )
        self.abandoned = Counter(
            "pooul_trades_abandoned",
            "Expired trades never confirmed final and no longer queried (dead-lettered).",
            registry=r,
        )
        self.reconcile_checks = Counter(
            "pooul_trades_reconcile_checks",
            "Reconciliation queries of pending trades, by the state the platform answered.",
            ["status"],
            registry=r,
        )
        self.closes = Counter(
            "pooul_trades_close_calls",
            "Close API calls for expired unpaid trades, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.query_errors = Counter(
            "pooul_trades_query_errors",
            "Failed queries, by error class.",
            ["error"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "pooul_trades_query_seconds",
            "Latency of Pooul query calls (successful or not).",
            buckets=_QUERY_BUCKETS,
            registry=r,
        )
        self.notify_to_event_seconds = Histogram(
            "pooul_trades_notify_to_event_seconds",
            "From the ingress receiving a notify to its payment event being acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
