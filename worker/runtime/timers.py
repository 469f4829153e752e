"""Feeding due timers and expiries of the partitions' state into their keys' FIFOs.

    feeder = TimerFeeder(runs=lambda: runs.values(), budget=budget, paused=breaker_is_open,
                         wakeup=event)
    await feeder.run()          # a background task, cancelled on stop

A timer or expiry runs through its key's FIFO like a record (never beside the key's other
work) and takes an in-flight budget slot, so timers cannot flood a worker. The feeder sleeps
until the nearest deadline (at most a second, so new timers are noticed), or until `wakeup` is
set (a handler set a timer, a restore finished, the breaker changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

from worker.runtime.aio import wait_for
from worker.runtime.keyed import InFlightBudget
from worker.runtime.partition import PartitionRun, Work, WorkKind

__all__ = ["TimerFeeder"]


class TimerFeeder:
    """`runs`: the partitions owned now; `paused`: true while nothing may be fed (the circuit
    breaker is open: timers would only fail)."""

    def __init__(
        self,
        *,
        runs: Callable[[], Iterable[PartitionRun]],
        budget: InFlightBudget,
        paused: Callable[[], bool],
        wakeup: asyncio.Event,
    ) -> None:
        self._runs = runs
        self._budget = budget
        self._paused = paused
        self._wakeup = wakeup

    async def run(self) -> None:
        while True:
            now = time.time()
            backlog = False
            next_at: float | None = None
            if not self._paused():
                backlog, next_at = self._feed(now)
            if backlog or self._paused():
                timeout = 0.1
            else:
                timeout = 1.0 if next_at is None else min(1.0, max(0.005, next_at - now))
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()

    def _feed(self, now: float) -> tuple[bool, float | None]:
        """Queue what is due; (whether some is still due for want of budget, the next deadline)."""
        budget = self._budget
        backlog = False
        next_at: float | None = None
        for run in list(self._runs()):
            state = run.state
            if state is None or not run.ready or not run.active():
                continue
            for kind, due in (
                (WorkKind.EXPIRE, state.due_expiries),
                (WorkKind.TIMER, state.due_timers),
            ):
                # The room is read again for timers, after the expiries took theirs.
                for key, at in due(now, budget.room):
                    budget.acquire()
                    run.held += 1
                    run.queues.submit(key, Work(kind, due=at))
            deadline = state.next_deadline()
            if deadline is not None:
                if deadline <= now:
                    backlog = True  # due, but the budget is used up
                elif next_at is None or deadline < next_at:
                    next_at = deadline
        return backlog, next_at
