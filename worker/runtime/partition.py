"""What the processor holds for one partition during one assignment of it.

A new `PartitionRun` is made on every assignment and dropped on revocation, so late work of an
old assignment can never touch the bookkeeping of a new one.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka import TopicPartition

from worker.runtime.keyed import KeyedQueues
from worker.runtime.offsets import OffsetTracker
from worker.runtime.record import Record
from worker.runtime.state import PartitionState

__all__ = ["PartitionRun", "Work", "WorkKind"]


class WorkKind(enum.Enum):
    RECORD = "record"
    TIMER = "timer"
    EXPIRE = "expire"


class Work:
    """One item of a key's queue: an input record, a timer firing or an expiry."""

    __slots__ = ("due", "kind", "record")

    def __init__(self, kind: WorkKind, record: Record | None = None, due: float = 0.0) -> None:
        self.kind = kind
        self.record = record
        self.due = due


class PartitionRun:
    """Offsets, key queues, state and progress of one assigned partition."""

    def __init__(
        self,
        tp: TopicPartition,
        *,
        run: Callable[[PartitionRun, bytes, Work], Awaitable[None]],
        on_crash: Callable[[BaseException], None],
        needs_restore: bool,
    ) -> None:
        self.tp = tp
        self.partition: int = tp.partition
        self.offsets = OffsetTracker()
        self.queues: KeyedQueues[Work] = KeyedQueues(
            run=lambda key, work: run(self, key, work), on_crash=on_crash
        )
        self.state: PartitionState | None = None
        self.ready = not needs_restore
        self.revoked = False
        self.held = 0  # items of this run holding an in-flight budget slot
        self.in_handler: dict[asyncio.Task[Any], float] = {}
        self.last_committed: int | None = None
        self.highwater: int | None = None
        self.progress_marker: tuple[int | None, int] = (None, 0)
        self.progress_at = time.monotonic()
        self.stall_reason: str | None = None

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Mark the current task as inside a handler call (revocation waits for those)."""
        task = asyncio.current_task()
        assert task is not None
        self.in_handler[task] = time.monotonic()
        try:
            yield
        finally:
            self.in_handler.pop(task, None)

    def active(self) -> bool:
        """False once revoked (a method, so type checkers re-read it after every await)."""
        return not self.revoked

    def revoke(self) -> None:
        """Start nothing new; cancel key tasks now that are not inside a handler call."""
        self.revoked = True
        self.queues.close()
        for task in self.queues.tasks():
            if task not in self.in_handler:
                task.cancel()
