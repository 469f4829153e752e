"""asyncio helpers the runtime needs to be cancellation-safe on Python 3.11.

Python 3.11's `asyncio.wait_for` returns the inner result instead of raising when the caller
is cancelled at the moment the inner future completes (fixed in 3.12, CPython gh-86296). A
background loop that swallows its cancellation that way never stops, and `stop()` hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["cancelling", "wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 (it is wait_for)
    """`asyncio.wait_for` that always propagates the caller's cancellation.

    On timeout (TimeoutError) or cancellation the inner task is cancelled and awaited.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise TimeoutError
    return task.result()


def cancelling() -> bool:
    """Whether the running task has been asked to stop (`Task.cancel()`), as opposed to a
    `CancelledError` that merely came out of something it awaited (a future another task
    cancelled): only the first must propagate."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
