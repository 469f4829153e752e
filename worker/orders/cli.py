"""`pooul-worker orders [--port P]`: turn order requests into unified orders until SIGTERM."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

log = logging.getLogger("worker.orders")


def register(subparsers: Any) -> None:
    """Add `pooul-worker orders` to the CLI."""
    parser = subparsers.add_parser(
        "orders",
        help="consume order requests, create Pooul unified orders, publish results and signals",
        description="Reads POOUL_TOPIC_ORDER_REQUESTS in group POOUL_ORDERS_GROUP_ID, writes "
        "POOUL_TOPIC_ORDER_RESULTS and order-created signals to POOUL_TOPIC_TRADE_SIGNALS. "
        "Serves /healthz, /readyz and /metrics (see docs/orders.md).",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port of /healthz, /readyz, /metrics (default POOUL_WORKER_PORT, 9102; 0 = any)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        print("pooul-worker orders: --port must be between 0 and 65535")
        return 2
    return run(_serve(settings=settings, port=args.port))


async def _serve(*, settings: Settings, port: int | None) -> int:
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.orders.service import orders_processor
    from worker.runtime import UsageError, run_worker

    if settings.pooul_notify_url is None:
        log.warning(
            "POOUL_NOTIFY_URL is not set: requests without their own notify_url are rejected"
        )
    if not settings.merchant_keys.merchants():
        log.warning("POOUL_MERCHANT_KEYS is empty: every request is rejected (unknown merchant)")
    async with orders_processor(settings) as processor:
        try:
            await run_worker(processor, port=port)
        except UsageError as exc:
            log.error("cannot run the orders worker", extra={"error": str(exc)})
            return 2
    return 0
