"""The cancellation-safe wait_for the runtime's background loops rely on."""

from __future__ import annotations

import asyncio

import pytest

from worker.runtime.aio import wait_for


async def test_cancellation_is_propagated_when_the_inner_completes_at_the_same_moment() -> None:
    """Cancelling while the awaited event fires still cancels the caller (3.11's wait_for swallows it)."""
    event = asyncio.Event()
    continued: list[bool] = []

    async def loop() -> None:
        await wait_for(event.wait(), 10)
        continued.append(True)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert continued == []


async def test_timeout_cancels_the_inner_awaitable() -> None:
    """On timeout the inner task is cancelled and awaited before TimeoutError is raised."""
    inner_cancelled: list[bool] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            inner_cancelled.append(True)
            raise

    with pytest.raises(TimeoutError):
        await wait_for(slow(), 0.01)
    assert inner_cancelled == [True]


async def test_result_is_returned() -> None:
    """A result within the timeout comes back unchanged."""

    async def value() -> int:
        return 7

    assert await wait_for(value(), 1) == 7
