"""Circuit breaker transitions, without a broker."""

from __future__ import annotations

import asyncio

from worker.runtime.breaker import CircuitBreaker, CircuitState


def make(
    threshold: int = 3, open_seconds: float = 0.05
) -> tuple[CircuitBreaker, list[CircuitState]]:
    changes: list[CircuitState] = []
    breaker = CircuitBreaker(
        failure_threshold=threshold,
        open_seconds=open_seconds,
        open_max_seconds=0.2,
        on_change=changes.append,
    )
    return breaker, changes


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read through a call, so the type checker does not pin the state after an assert."""
    return breaker.state


async def fail(breaker: CircuitBreaker) -> None:
    async with breaker.attempt() as attempt:
        attempt.failed()


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker.attempt() as attempt:
        attempt.succeeded()


async def test_opens_after_consecutive_failures_only() -> None:
    """A success in between resets the count; `threshold` failures in a row open the breaker."""
    breaker, changes = make()
    await fail(breaker)
    await fail(breaker)
    await succeed(breaker)
    await fail(breaker)
    await fail(breaker)
    assert state(breaker) is CircuitState.CLOSED
    await fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    assert changes == [CircuitState.OPEN]
    breaker.close()


async def test_half_open_lets_exactly_one_probe_through() -> None:
    """While half-open a single attempt runs; the others wait for its outcome."""
    breaker, changes = make(threshold=1)
    await fail(breaker)
    started: list[int] = []
    release = asyncio.Event()

    async def attempt(n: int) -> None:
        async with breaker.attempt() as a:
            started.append(n)
            await release.wait()
            a.succeeded()

    tasks = [asyncio.create_task(attempt(n)) for n in range(3)]
    await asyncio.sleep(0.02)
    assert started == [], "an attempt ran while the breaker was open"
    await asyncio.sleep(0.06)
    assert state(breaker) is CircuitState.HALF_OPEN
    assert len(started) == 1
    release.set()
    await asyncio.gather(*tasks)
    assert state(breaker) is CircuitState.CLOSED
    assert len(started) == 3
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


async def test_failed_probe_reopens_with_a_longer_interval() -> None:
    """A failing probe reopens the breaker; the next half-open comes later than the first."""
    breaker, changes = make(threshold=1, open_seconds=0.05)
    await fail(breaker)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await fail(breaker)  # waits for half-open, probes, fails
    first_wait = loop.time() - t0
    assert state(breaker) is CircuitState.OPEN
    t1 = loop.time()
    await succeed(breaker)
    second_wait = loop.time() - t1
    assert state(breaker) is CircuitState.CLOSED
    assert second_wait > first_wait
    assert changes.count(CircuitState.OPEN) == 2


async def test_cancelled_probe_lets_another_attempt_probe() -> None:
    """A probe that ends without a verdict (cancelled) hands the probe to a waiting attempt."""
    breaker, _ = make(threshold=1, open_seconds=0.02)
    await fail(breaker)

    async def hang() -> None:
        async with breaker.attempt():
            await asyncio.Event().wait()

    hanging = asyncio.create_task(hang())
    await asyncio.sleep(0.05)
    assert state(breaker) is CircuitState.HALF_OPEN
    waiter = asyncio.create_task(succeed(breaker))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    hanging.cancel()
    await asyncio.wait_for(waiter, 1)
    assert state(breaker) is CircuitState.CLOSED


async def test_late_outcomes_from_before_opening_are_ignored() -> None:
    """A success that started before the breaker opened does not close it."""
    breaker, _ = make(threshold=1)
    early = breaker.attempt()
    attempt = await early.__aenter__()
    await fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    attempt.succeeded()
    await early.__aexit__(None, None, None)
    assert state(breaker) is CircuitState.OPEN
    breaker.close()


async def test_late_failures_from_before_opening_do_not_reopen_it_once_closed() -> None:
    """Calls that started before the outage and fail after the probe closed the breaker say
    nothing about the remote now: the breaker stays closed."""
    breaker, changes = make(threshold=2)
    early = [breaker.attempt() for _ in range(2)]
    attempts = [await context.__aenter__() for context in early]
    await fail(breaker)
    await fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    await asyncio.sleep(0.08)  # past open_seconds: the next attempt is the probe
    await succeed(breaker)
    assert state(breaker) is CircuitState.CLOSED
    for attempt, context in zip(attempts, early, strict=True):
        attempt.failed()
        await context.__aexit__(None, None, None)
    assert state(breaker) is CircuitState.CLOSED
    assert changes[-1] is CircuitState.CLOSED
    breaker.close()
