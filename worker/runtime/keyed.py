"""Per-key ordered, cross-key concurrent execution, and the in-flight budget that bounds it.

Work items of one key run strictly one after another, in submission order; items of different
keys run concurrently, one asyncio task per key that has work. The `InFlightBudget` caps how
many items exist at once across all keys and partitions, so a burst cannot buffer without bound.

    queues = KeyedQueues(run=process)      # process(key, item) -> None, must not raise
    queues.submit(b"trade-1", item_a)      # starts at once
    queues.submit(b"trade-1", item_b)      # runs after item_a finished
    queues.submit(b"trade-2", item_c)      # runs concurrently with item_a
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from worker.runtime.aio import cancelling

__all__ = ["InFlightBudget", "KeyedQueues"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class KeyedQueues(Generic[T]):
    """One FIFO per key, drained by one task per key; `close()` stops before the next item.

    `run(key, item)` is expected to handle its own errors. If it raises anyway, the item is
    left unfinished (never skipped), the key stops and `on_crash` is told.
    """

    def __init__(
        self,
        *,
        run: Callable[[bytes, T], Awaitable[None]],
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._run = run
        self._on_crash = on_crash
        self._queues: dict[bytes, deque[T]] = {}
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: bytes, item: T) -> None:
        if self._closed:
            raise RuntimeError("queues are closed")
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(item)
            return
        queue = deque((item,))
        self._queues[key] = queue
        self._idle.clear()
        self._tasks[key] = asyncio.create_task(self._drain(key, queue))

    async def _drain(self, key: bytes, queue: deque[T]) -> None:
        try:
            while queue and not self._closed:
                await self._run(key, queue[0])
                queue.popleft()
        except asyncio.CancelledError as exc:
            if cancelling():
                raise
            # Not a cancellation of this task: a crash like any other, or the key's records
            # would sit unfinished (holding the partition's commit) with nobody told.
            self._crashed(key, exc)
        except Exception as exc:
            self._crashed(key, exc)
        finally:
            del self._queues[key]
            del self._tasks[key]
            if not self._tasks:
                self._idle.set()

    def _crashed(self, key: bytes, exc: BaseException) -> None:
        log.error(
            "key runner crashed; its records stay unfinished",
            extra={"key": key},
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        if self._on_crash is not None:
            self._on_crash(exc)

    def __len__(self) -> int:
        """Keys with work (queued or running)."""
        return len(self._queues)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def close(self) -> None:
        """Start no further item; items already running continue."""
        self._closed = True

    async def wait_idle(self) -> None:
        """Wait until no key has a running task (bound it with `aio.wait_for`)."""
        await self._idle.wait()

    async def cancel(self) -> None:
        """Cancel every key task and wait until they are gone."""
        tasks = self.tasks()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before its first step never ran its `finally`.
        self._queues.clear()
        self._tasks.clear()
        self._idle.set()


class InFlightBudget:
    """A counter of items in flight with a capacity and a resume threshold (hysteresis).

    `full` turns True at capacity and stays True until usage fell to `resume_at`, so fetching
    is not paused and resumed (dropping prefetched data each time) on every single record.
    """

    def __init__(self, capacity: int, *, on_change: Callable[[], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.resume_at = capacity - max(1, capacity // 4)
        self.used = 0
        self._full = False
        self._on_change = on_change
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def room(self) -> int:
        return max(0, self.capacity - self.used) if not self._full else 0

    @property
    def full(self) -> bool:
        return self._full

    def acquire(self, count: int = 1) -> None:
        """Take slots; the caller checked `room` (going over only happens by explicit choice)."""
        self.used += count
        if self.used:
            self._empty.clear()
        if not self._full and self.used >= self.capacity:
            self._full = True
            self._changed()

    def release(self, count: int = 1) -> None:
        self.used -= count
        if self.used < 0:
            raise RuntimeError("in-flight budget released more than acquired")
        if self.used == 0:
            self._empty.set()
        if self._full and self.used <= self.resume_at:
            self._full = False
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def wait_empty(self) -> None:
        """Wait until nothing is in flight (bound it with `aio.wait_for`)."""
        await self._empty.wait()
