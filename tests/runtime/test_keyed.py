"""Per-key queues and the in-flight budget, without a broker."""

from __future__ import annotations

import asyncio
import random

import pytest

from worker.runtime.aio import wait_for
from worker.runtime.keyed import InFlightBudget, KeyedQueues


async def test_same_key_in_order_different_keys_concurrent() -> None:
    """Items of one key never overlap and keep order; items of different keys overlap."""
    rng = random.Random(1)
    active: dict[bytes, int] = {}
    seen: dict[bytes, list[int]] = {}
    concurrency = [0, 0]  # current, max

    async def run(key: bytes, item: int) -> None:
        active[key] = active.get(key, 0) + 1
        assert active[key] == 1, "two items of one key ran at once"
        concurrency[0] += 1
        concurrency[1] = max(concurrency[1], concurrency[0])
        await asyncio.sleep(rng.random() * 0.003)
        seen.setdefault(key, []).append(item)
        concurrency[0] -= 1
        active[key] -= 1

    queues: KeyedQueues[int] = KeyedQueues(run=run)
    for i in range(600):
        queues.submit(b"k%d" % (i % 20), i)
    await wait_for(queues.wait_idle(), 10)
    assert sum(len(v) for v in seen.values()) == 600
    for items in seen.values():
        assert items == sorted(items)
    assert concurrency[1] > 1
    assert len(queues) == 0


async def test_close_stops_before_the_next_item() -> None:
    """After close() the running item finishes and no further item of the key starts."""
    gate = asyncio.Event()
    ran: list[int] = []

    async def run(key: bytes, item: int) -> None:
        ran.append(item)
        await gate.wait()

    queues: KeyedQueues[int] = KeyedQueues(run=run)
    queues.submit(b"a", 1)
    queues.submit(b"a", 2)
    await asyncio.sleep(0)
    queues.close()
    gate.set()
    await wait_for(queues.wait_idle(), 2)
    assert ran == [1]


async def test_a_crashing_runner_leaves_its_item_and_reports() -> None:
    """An exception escaping `run` is reported and the key stops (its item is not popped as done)."""
    crashes: list[BaseException] = []
    ran: list[int] = []

    async def run(key: bytes, item: int) -> None:
        ran.append(item)
        if item == 1:
            raise RuntimeError("bug")

    queues: KeyedQueues[int] = KeyedQueues(run=run, on_crash=crashes.append)
    queues.submit(b"a", 1)
    queues.submit(b"a", 2)
    await wait_for(queues.wait_idle(), 2)
    assert ran == [1]
    assert len(crashes) == 1 and isinstance(crashes[0], RuntimeError)


async def test_cancel_stops_running_items() -> None:
    """cancel() ends every key task, including ones blocked forever."""

    async def run(key: bytes, item: int) -> None:
        await asyncio.Event().wait()

    queues: KeyedQueues[int] = KeyedQueues(run=run)
    for i in range(5):
        queues.submit(b"k%d" % i, i)
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await wait_for(queues.wait_idle(), 0.01)
    await queues.cancel()
    assert len(queues) == 0


def is_full(budget: InFlightBudget) -> bool:
    return budget.full


async def test_budget_full_until_a_quarter_is_free() -> None:
    """The budget reports full at capacity and only resumes once usage fell to 3/4."""
    changes: list[bool] = []
    budget = InFlightBudget(8, on_change=lambda: changes.append(budget.full))
    budget.acquire(7)
    assert budget.room == 1 and not is_full(budget)
    budget.acquire(1)
    assert is_full(budget) and budget.room == 0
    budget.release(1)
    assert is_full(budget), "resumed after a single slot freed (no hysteresis)"
    budget.release(1)
    assert not is_full(budget) and budget.room == 2
    assert changes == [True, False]
    budget.release(6)
    await wait_for(budget.wait_empty(), 0.01)


async def test_a_cancelled_error_that_is_not_a_cancellation_is_a_crash() -> None:
    """`run` raising CancelledError while its task was not cancelled (it awaited a future
    another task cancelled) is reported like any crash, not taken as a normal exit."""
    crashes: list[BaseException] = []

    async def run(key: bytes, item: int) -> None:
        shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shared.cancel()
        await shared

    queues: KeyedQueues[int] = KeyedQueues(run=run, on_crash=crashes.append)
    queues.submit(b"a", 1)
    await wait_for(queues.wait_idle(), 2)
    assert len(crashes) == 1 and isinstance(crashes[0], asyncio.CancelledError)
