"""`pooul-worker trades [--port P]`: confirm trades and publish payment events until SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from worker.loop import run
from worker.roles import add_worker_parser, port_is_valid, serve_processor
from worker.settings import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `pooul-worker trades` to the CLI."""
    parser = add_worker_parser(
        subparsers,
        "trades",
        help="confirm trades by query and publish payment events (CloudEvents)",
        description="Reads POOUL_TOPIC_TRADE_SIGNALS in group POOUL_TRADES_GROUP_ID (state in "
        "POOUL_TOPIC_TRADE_STATE), queries Pooul, writes POOUL_TOPIC_PAYMENT_EVENTS. Serves "
        "/healthz, /readyz and /metrics (see docs/trades.md).",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not port_is_valid("trades", args.port):
        return 2
    if not settings.merchant_keys.merchants():
        print("pooul-worker trades: POOUL_MERCHANT_KEYS is empty: no query could be signed")
        return 2
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.trades.service import trades_processor

    return run(serve_processor("trades", trades_processor(settings), port=args.port))
