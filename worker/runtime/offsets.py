"""Which offset of a partition may be committed while records finish out of order.

Records of one partition run concurrently (different keys), so offset 7 can finish before 5.
Committing 8 then would make a crash skip 5. The committable offset is therefore the lowest
offset not yet finished (Kafka commits name the *next* offset to read); when every admitted
record finished it is the last admitted offset + 1.

    tracker = OffsetTracker()
    tracker.add(5); tracker.add(6); tracker.add(7)
    tracker.finish(7); tracker.committable   # 5
    tracker.finish(5); tracker.committable   # 6
    tracker.finish(6); tracker.committable   # 8
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Admitted-but-unfinished offsets of one partition, in admission (= offset) order.

    Amortised O(1) per record: a deque of admitted offsets and a set of those that finished
    out of order; the head of the deque is the lowest unfinished offset.
    """

    __slots__ = ("_clock", "_done", "_last_added", "_pending", "finished_total")

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: deque[tuple[int, float]] = deque()
        self._done: set[int] = set()
        self._last_added: int | None = None
        self.finished_total = 0

    def add(self, offset: int) -> None:
        """Admit the next record; offsets must increase (gaps are fine: compaction, markers)."""
        if self._last_added is not None and offset <= self._last_added:
            raise ValueError(f"offset {offset} admitted after {self._last_added}")
        self._pending.append((offset, self._clock()))
        self._last_added = offset

    def finish(self, offset: int) -> None:
        """Mark an admitted record finished (handled or dead-lettered)."""
        pending = self._pending
        if not pending or offset < pending[0][0] or offset > pending[-1][0]:
            raise ValueError(f"offset {offset} is not unfinished")
        if offset in self._done:
            raise ValueError(f"offset {offset} finished twice")
        self.finished_total += 1
        if offset != pending[0][0]:
            self._done.add(offset)
            return
        pending.popleft()
        done = self._done
        while pending and pending[0][0] in done:
            done.discard(pending.popleft()[0])

    @property
    def committable(self) -> int | None:
        """The offset to commit (next to read), or None when nothing was admitted yet."""
        if self._pending:
            return self._pending[0][0]
        return None if self._last_added is None else self._last_added + 1

    @property
    def next_offset(self) -> int | None:
        """The offset after the last admitted one (where fetching continues)."""
        return None if self._last_added is None else self._last_added + 1

    @property
    def unfinished(self) -> int:
        return len(self._pending) - len(self._done)

    def oldest_unfinished_age(self) -> float:
        """Seconds since the lowest unfinished record was admitted (0 when none)."""
        return self._clock() - self._pending[0][1] if self._pending else 0.0
