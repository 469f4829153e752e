"""What the worker roles (`pooul-worker orders`, `pooul-worker trades`) share on the command
line: the `--port` option of their health server, and serving a stream processor until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.runtime import StreamProcessor

__all__ = ["add_worker_parser", "port_is_valid", "serve_processor"]

log = logging.getLogger("worker.roles")


def add_worker_parser(
    subparsers: Any, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A sub-command for a worker role, with `--port` for /healthz, /readyz and /metrics."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port of /healthz, /readyz, /metrics (default POOUL_WORKER_PORT, 9102; 0 = any)",
    )
    return parser


def port_is_valid(name: str, port: int | None) -> bool:
    """False (with a message) when `--port` is outside 0–65535."""
    if port is not None and not 0 <= port <= 65535:
        print(f"pooul-worker {name}: --port must be between 0 and 65535")
        return False
    return True


async def serve_processor(
    name: str, processor: AbstractAsyncContextManager[StreamProcessor], *, port: int | None
) -> int:
    """Run the processor with its health server until SIGTERM/SIGINT; exit code 2 on misuse."""
    from worker.heap import freeze_startup_heap
    from worker.runtime import UsageError, run_worker

    async with processor as started:
        freeze_startup_heap()
        try:
            await run_worker(started, port=port)
        except UsageError as exc:
            log.error(f"cannot run the {name} worker", extra={"error": str(exc)})
            return 2
    return 0
