"""Wiring of one trades worker: Pooul client, handler and stream processor from settings.

    async with trades_processor(settings) as processor:   # the client is open inside
        await run_worker(processor)                         # or: async with processor: ...

Shared by `pooul-worker trades`, the tests and the benchmark, so they all run the same thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from worker.pooul import PooulClient
from worker.runtime import StreamProcessor
from worker.settings import Settings
from worker.trades.handler import TradesHandler
from worker.trades.metrics import TradesMetrics

__all__ = ["trades_processor"]


@asynccontextmanager
async def trades_processor(
    settings: Settings, *, metrics: TradesMetrics | None = None
) -> AsyncIterator[StreamProcessor]:
    """A not-yet-started processor over trade-signals, its state on trade-state.

    The Pooul client lives as long as the context; the runtime's metrics and the
    `pooul_trades_*` series share one registry (the one `/metrics` serves). Pass `metrics` to
    read the counters from outside (tests, the benchmark).
    """
    metrics = metrics if metrics is not None else TradesMetrics()
    async with PooulClient.from_settings(settings) as client:
        handler = TradesHandler(settings=settings, client=client, metrics=metrics)
        yield StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_trade_signals,
            group_id=settings.pooul_trades_group_id,
            handler=handler,
            state_topic=settings.pooul_topic_trade_state,
            name="trades",
            registry=metrics.registry,
        )
