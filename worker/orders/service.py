"""Wiring of one orders worker: Pooul client, handler and stream processor from settings.

Used by `pooul-worker orders`, the tests and the benchmark alike:

    async with orders_processor(settings) as processor:   # the client is open inside
        await run_worker(processor)                         # or: async with processor: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry

from worker.orders.handler import OrdersHandler
from worker.orders.metrics import OrdersMetrics
from worker.pooul import PooulClient
from worker.runtime import StreamProcessor
from worker.settings import Settings

__all__ = ["orders_processor"]


@asynccontextmanager
async def orders_processor(
    settings: Settings, *, registry: CollectorRegistry | None = None
) -> AsyncIterator[StreamProcessor]:
    """A not-yet-started processor over order-requests, its state on order-state.

    The Pooul client lives as long as the context; the runtime's and the orders worker's
    metrics share one registry (the one `/metrics` serves).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = OrdersMetrics(registry=registry)
    async with PooulClient.from_settings(settings) as client:
        handler = OrdersHandler(client=client, settings=settings, metrics=metrics)
        yield StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_order_requests,
            group_id=settings.pooul_orders_group_id,
            handler=handler,
            state_topic=settings.pooul_topic_order_state,
            name="orders",
            registry=registry,
        )
