"""`pooul-worker trades [--port P]`: confirm trades and publish payment events until SIGTERM."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

log = logging.getLogger("worker.trades")


def register(subparsers: Any) -> None:
    """Add `pooul-worker trades` to the CLI."""
    parser = subparsers.add_parser(
        "trades",
        help="confirm trades by query and publish payment events (CloudEvents)",
        description="Reads POOUL_TOPIC_TRADE_SIGNALS in group POOUL_TRADES_GROUP_ID (state in "
        "POOUL_TOPIC_TRADE_STATE), queries Pooul, writes POOUL_TOPIC_PAYMENT_EVENTS. Serves "
        "/healthz, /readyz and /metrics (see docs/trades.md).",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port of /healthz, /readyz, /metrics (default POOUL_WORKER_PORT, 9102; 0 = any)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        print("pooul-worker trades: --port must be between 0 and 65535")
        return 2
    if not settings.merchant_keys.merchants():
        print("pooul-worker trades: POOUL_MERCHANT_KEYS is empty: no query could be signed")
        return 2
    return run(_serve(settings=settings, port=args.port))


async def _serve(*, settings: Settings, port: int | None) -> int:
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.runtime import UsageError, run_worker
    from worker.trades.service import trades_processor

    async with trades_processor(settings) as processor:
        try:
            await run_worker(processor, port=port)
        except UsageError as exc:
            log.error("cannot run the trades worker", extra={"error": str(exc)})
            return 2
    return 0
