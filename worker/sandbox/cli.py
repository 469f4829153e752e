"""`pooul-worker sandbox`: run the local Pooul gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add `pooul-worker sandbox` to the CLI."""
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local Pooul gateway (pay/query/close, notifies, fault injection)",
        description="A faithful local Pooul for development and tests. Merchants and keys come "
        "from POOUL_MERCHANT_KEYS; see docs/sandbox.md for the control API.",
    )
    parser.add_argument("--host", help="interface to bind (default POOUL_SANDBOX_HOST, 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port to listen on (default POOUL_SANDBOX_PORT, 8090)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        help="multiply every notify retry interval (0.001 turns 15 s into 15 ms; "
        "default POOUL_SANDBOX_TIME_SCALE, 1.0)",
    )
    parser.add_argument("--seed", type=int, help="seed fault draws and ids (reproducible runs)")
    parser.add_argument(
        "--notify-timeout",
        type=float,
        default=5.0,
        help="seconds the merchant has to answer a notify (default 5, the platform's rule; "
        "raise it while stepping through your notify handler in a debugger)",
    )
    parser.add_argument(
        "--max-orders",
        type=int,
        help="orders kept in memory; past it the oldest are forgotten "
        "(default POOUL_SANDBOX_MAX_ORDERS, 100000)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host if args.host is not None else settings.pooul_sandbox_host
    port = args.port if args.port is not None else settings.pooul_sandbox_port
    scale = args.time_scale if args.time_scale is not None else settings.pooul_sandbox_time_scale
    if (
        scale <= 0
        or args.notify_timeout <= 0
        or (args.max_orders is not None and args.max_orders < 1)
    ):
        print(
            "pooul-worker sandbox: --time-scale, --notify-timeout and --max-orders must be positive",
            file=sys.stderr,
        )
        return 2
    if args.max_orders is not None:
        settings = settings.model_copy(update={"pooul_sandbox_max_orders": args.max_orders})
    public_url = settings.pooul_sandbox_public_url
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        print(
            "pooul-worker sandbox: POOUL_SANDBOX_PUBLIC_URL must be an absolute http(s) URL",
            file=sys.stderr,
        )
        return 2
    return run(
        _serve(
            settings=settings,
            host=host,
            port=port,
            time_scale=scale,
            seed=args.seed,
            notify_timeout=args.notify_timeout,
        )
    )


async def _serve(
    *,
    settings: Settings,
    host: str,
    port: int,
    time_scale: float,
    seed: int | None,
    notify_timeout: float,
) -> int:
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.heap import freeze_startup_heap
    from worker.sandbox.app import SandboxServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = SandboxServer(
        settings=settings,
        host=host,
        port=port,
        time_scale=time_scale,
        seed=seed,
        notify_timeout=notify_timeout,
        public_url=settings.pooul_sandbox_public_url,
    )
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        print(f"pooul-worker sandbox: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    freeze_startup_heap()
    try:
        log.info(
            "sandbox listening",
            extra={
                "url": server.url,
                "merchants": settings.merchant_keys.merchants(),
                "time_scale": time_scale,
                "max_orders": settings.pooul_sandbox_max_orders,
            },
        )
        await stop.wait()
        log.info("sandbox stopping", extra={"pending_notifies": server.sandbox.notifier.pending})
    finally:
        await server.stop()
    return 0
