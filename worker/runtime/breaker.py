"""A circuit breaker for the remote API every record depends on.

When Pooul is down, retrying each record on its own burns retries, floods the logs and hammers
a dead service. After `failure_threshold` RemoteUnavailable outcomes in a row the breaker opens:
the processor pauses fetching and no attempt starts. After the open interval one attempt runs
as a probe (half-open): success closes the breaker, failure reopens it with a doubled interval
(capped). Any outcome in which the remote answered (success, Retry, Permanent) counts as success.

    async with breaker.attempt() as attempt:   # waits while the breaker is open
        try:
            await call_remote()
        except RemoteUnavailable:
            attempt.failed()
            raise
        attempt.succeeded()
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

__all__ = ["CircuitBreaker", "CircuitState"]

log = logging.getLogger(__name__)


class CircuitState(enum.IntEnum):
    """Metric values: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Attempt:
    """One permitted attempt; report its outcome once (unreported counts as neutral)."""

    __slots__ = ("_breaker", "epoch", "probe", "reported")

    def __init__(self, breaker: CircuitBreaker, epoch: int, probe: bool) -> None:
        self._breaker = breaker
        self.epoch = epoch
        self.probe = probe
        self.reported = False

    def succeeded(self) -> None:
        self._breaker._report(self, ok=True)

    def failed(self) -> None:
        self._breaker._report(self, ok=False)

    def neutral(self) -> None:
        """Neither evidence that the remote works nor that it is down (e.g. a bug)."""
        self._breaker._report(self, ok=None)


class CircuitBreaker:
    """Closed → open after consecutive failures → half-open (one probe) → closed or open again."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        open_seconds: float,
        open_max_seconds: float,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.open_max_seconds = max(open_max_seconds, open_seconds)
        self._on_change = on_change
        self.state = CircuitState.CLOSED
        self.failures = 0
        self._interval = open_seconds
        self._epoch = 0
        self._probing = False
        self._changed = asyncio.Event()
        self._half_open_timer: asyncio.TimerHandle | None = None

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[Attempt]:
        attempt = await self._acquire()
        try:
            yield attempt
        finally:
            if not attempt.reported:
                self._report(attempt, ok=None)

    async def _acquire(self) -> Attempt:
        while True:
            if self.state is CircuitState.CLOSED:
                return Attempt(self, self._epoch, probe=False)
            if self.state is CircuitState.HALF_OPEN and not self._probing:
                self._probing = True
                return Attempt(self, self._epoch, probe=True)
            await self._changed.wait()

    def _report(self, attempt: Attempt, *, ok: bool | None) -> None:
        if attempt.reported:
            return
        attempt.reported = True
        if attempt.probe:
            if attempt.epoch != self._epoch:
                return
            self._probing = False
            if ok is True:
                self._close()
            elif ok is False:
                self._open()
            else:
                self._wake()  # let another waiter probe
            return
        if self.state is not CircuitState.CLOSED or attempt.epoch != self._epoch:
            # It started before the breaker last opened: it says nothing about the remote now
            # (a call that timed out during the outage must not reopen a closed breaker).
            return
        if ok is True:
            self.failures = 0
        elif ok is False:
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        interval = self._interval
        self._interval = min(self._interval * 2, self.open_max_seconds)
        self._transition(CircuitState.OPEN)
        log.warning(
            "circuit breaker opened: remote unavailable, fetching paused",
            extra={"failures": self.failures, "retry_in_s": interval},
        )
        self._half_open_timer = asyncio.get_running_loop().call_later(interval, self._half_open)

    def _half_open(self) -> None:
        self._half_open_timer = None
        if self.state is CircuitState.OPEN:
            self._transition(CircuitState.HALF_OPEN)
            log.info("circuit breaker half-open: probing the remote with one attempt")

    def _close(self) -> None:
        self.failures = 0
        self._interval = self.open_seconds
        self._transition(CircuitState.CLOSED)
        log.warning("circuit breaker closed: remote answered again, fetching resumes")

    def _transition(self, state: CircuitState) -> None:
        if self._half_open_timer is not None:
            self._half_open_timer.cancel()
            self._half_open_timer = None
        self.state = state
        self._epoch += 1
        self._probing = False
        if self._on_change is not None:
            self._on_change(state)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """Cancel the pending half-open timer (on processor stop)."""
        if self._half_open_timer is not None:
            self._half_open_timer.cancel()
            self._half_open_timer = None
