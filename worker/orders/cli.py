"""`pooul-worker orders [--port P]`: turn order requests into unified orders until SIGTERM."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from worker.loop import run
from worker.roles import add_worker_parser, port_is_valid, serve_processor
from worker.settings import Settings

__all__ = ["register"]

log = logging.getLogger("worker.orders")


def register(subparsers: Any) -> None:
    """Add `pooul-worker orders` to the CLI."""
    parser = add_worker_parser(
        subparsers,
        "orders",
        help="consume order requests, create Pooul unified orders, publish results and signals",
        description="Reads POOUL_TOPIC_ORDER_REQUESTS in group POOUL_ORDERS_GROUP_ID, writes "
        "POOUL_TOPIC_ORDER_RESULTS and order-created signals to POOUL_TOPIC_TRADE_SIGNALS. "
        "Serves /healthz, /readyz and /metrics (see docs/orders.md).",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not port_is_valid("orders", args.port):
        return 2
    if settings.pooul_notify_url is None:
        log.warning(
            "POOUL_NOTIFY_URL is not set: requests without their own notify_url are rejected"
        )
    if not settings.merchant_keys.merchants():
        log.warning("POOUL_MERCHANT_KEYS is empty: every request is rejected (unknown merchant)")
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.orders.service import orders_processor

    return run(serve_processor("orders", orders_processor(settings), port=args.port))
