"""The orders worker: order requests from Kafka → Pooul unified orders → results and signals.

    async with orders_processor(settings) as processor:
        await run_worker(processor)        # `pooul-worker orders`

See docs/orders.md for the contract, settings and metrics.
"""

from worker.orders.handler import OrdersHandler
from worker.orders.metrics import OrdersMetrics
from worker.orders.service import orders_processor

__all__ = ["OrdersHandler", "OrdersMetrics", "orders_processor"]
