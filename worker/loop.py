"""The event loop every long-running role uses: uvloop where installed (cheaper HTTP and Kafka
I/O), asyncio's default elsewhere (e.g. Windows).

    return run(serve(settings))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["event_loop_factory", "run"]

T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh loop of the preferred kind."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)
