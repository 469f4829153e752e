"""`pooul-worker ingress [--host H] [--port P]`: serve the notify endpoint until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from worker.loop import run
from worker.settings import Settings

__all__ = ["register"]

log = logging.getLogger("worker.ingress")

# The platform stops waiting for an answer after 5 s; a slower `success` counts as a failure.
_PLATFORM_DEADLINE = 5.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingress",
        help="serve Pooul's notify_url: verify, write to Kafka (acks=all), answer success",
        description="POST /pooul/notify, GET /healthz, /readyz, /metrics. Limits and timeouts "
        "come from POOUL_INGRESS_* (see docs/ingress.md).",
    )
    parser.add_argument("--host", help="interface to bind (default POOUL_INGRESS_HOST, 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, help="port to listen on (default POOUL_INGRESS_PORT, 8080)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    budget = settings.pooul_ingress_read_timeout + settings.pooul_ingress_ack_timeout
    if budget >= _PLATFORM_DEADLINE:
        log.error(
            "POOUL_INGRESS_READ_TIMEOUT + POOUL_INGRESS_ACK_TIMEOUT must stay under 5 s, "
            "or a success could arrive after the platform gave up",
            extra={"budget_seconds": budget},
        )
        return 2
    _lighten_log_records()
    host = args.host if args.host is not None else settings.pooul_ingress_host
    port = args.port if args.port is not None else settings.pooul_ingress_port
    return run(_serve(settings=settings, host=host, port=port))


def _lighten_log_records() -> None:
    """Skip what our log formats never print; the logging HOWTO's "Optimization" settings.

    One line per notify is the ingress's biggest fixed cost after the HTTP parsing; not
    looking up the caller's frame, thread and process saves about a third of it.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


async def _serve(*, settings: Settings, host: str, port: int) -> int:
    # Imported here so `pooul-worker --help` stays cheap.
    from aiokafka.errors import KafkaConnectionError

    from worker.heap import freeze_startup_heap
    from worker.ingress.server import IngressServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = IngressServer(settings=settings, host=host, port=port)
    try:
        await server.start()
    except KafkaConnectionError as exc:
        log.error(
            "cannot reach Kafka",
            extra={"bootstrap": settings.kafka_bootstrap_servers, "error": str(exc)},
        )
        return 1
    except OSError as exc:
        log.error("cannot listen", extra={"host": host, "port": port, "error": str(exc)})
        return 1
    freeze_startup_heap()
    try:
        log.info(
            "ingress listening",
            extra={
                "url": server.url,
                "topic": settings.pooul_topic_trade_signals,
                "merchants": settings.merchant_keys.merchants(),
                "loop": type(loop).__module__,
            },
        )
        await stop.wait()
    finally:
        await server.stop()
    return 0
