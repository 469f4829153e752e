"""Timers live in the state: they fire after a restart, on whichever worker owns the key then."""

from __future__ import annotations

import asyncio
import time

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import gid, produce, read_topic, wait_until
from worker.runtime import KeyContext, Record, Retry, StreamProcessor
from worker.runtime.state import decode_entry


class Scheduler:
    """Each record schedules its key `delay` seconds ahead; timer firings are recorded."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.handled = 0
        self.fired: list[tuple[bytes, object, int, float]] = []

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        await ctx.set_state({"from": record.offset}, wake_at=time.time() + self.delay)
        self.handled += 1

    async def on_timer(self, ctx: KeyContext) -> None:
        assert ctx.record is None and ctx.wake_at is not None and ctx.wake_at <= time.time()
        if ctx.key == b"flaky" and ctx.attempt == 1:
            raise Retry("first firing fails")
        self.fired.append((ctx.key, ctx.state, ctx.attempt, time.time()))
        if ctx.key == b"again" and ctx.state == {"from": 0}:
            await ctx.set_state("second", wake_at=time.time() + 0.2)


async def test_timers_fire_after_a_restart_on_another_worker(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """Timers set by one worker fire on the next owner after the first one stopped, once each."""
    settings = await make_runtime_settings()
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    keys = [b"again", b"flaky", b"plain"]
    await produce(settings, topic, [(key, b"x") for key in keys], partition=1)

    first = Scheduler(delay=2.0)
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "timers"),
        handler=first,
        state_topic=state_topic,
        name="w1",
    ):
        await wait_until(lambda: first.handled == 3, what="the three records")
    stopped_at = time.time()
    assert first.fired == [], "a timer fired before it was due"

    second = Scheduler(delay=2.0)
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "timers"),
        handler=second,
        state_topic=state_topic,
        name="w2",
    ):
        await wait_until(
            lambda: len(second.fired) == 4, what="three timers and one re-scheduled timer"
        )
        await asyncio.sleep(0.4)  # nothing fires twice
    assert second.handled == 0, "records were redone although they had been committed"
    fired = [(key, state, attempt) for key, state, attempt, _ in second.fired]
    assert sorted(fired[:3]) == [
        (b"again", {"from": 0}, 1),
        (b"flaky", {"from": 1}, 2),
        (b"plain", {"from": 2}, 1),
    ]
    assert fired[3] == (b"again", "second", 1)
    assert all(at >= stopped_at for *_, at in second.fired)
    latest = {r.key: r.value for r in await read_topic(settings, state_topic)}
    assert all(
        latest[key] is not None and decode_entry(latest[key]).wake_at is None for key in keys
    ), "fired timers were not cleared in the changelog"


class FailingTimer:
    """Every record schedules an immediate timer; the timer of `doomed` always fails."""

    def __init__(self) -> None:
        self.handled = 0
        self.fired: list[tuple[bytes, int]] = []

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        await ctx.set_state({"n": record.offset}, wake_at=time.time())
        self.handled += 1

    async def on_timer(self, ctx: KeyContext) -> None:
        self.fired.append((ctx.key, ctx.attempt))
        if ctx.key == b"doomed":
            raise Retry("never works")


async def test_a_timer_that_fails_for_good_is_dead_lettered_and_cleared(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """After POOUL_MAX_ATTEMPTS the firing becomes a `timer` dead letter (value = the key's
    state, no offset), the key's timer is cleared (it does not fire again) and its state kept;
    the other key's timer is unaffected."""
    from schemas.dead_letter import parse_dead_letter

    settings = await make_runtime_settings(pooul_max_attempts=2)
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    await produce(settings, topic, [(b"doomed", b"x"), (b"fine", b"y")], partition=0)
    handler = FailingTimer()
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "timer-dl"),
        handler=handler,
        state_topic=state_topic,
        name="w",
    ):
        await wait_until(lambda: handler.fired.count((b"doomed", 2)) == 1, what="both attempts")
        await asyncio.sleep(0.5)  # a timer left set would fire again within this
    assert sorted(handler.fired) == [(b"doomed", 1), (b"doomed", 2), (b"fine", 1)]
    letters = [parse_dead_letter(r.value) for r in await read_topic(settings, settings.pooul_topic_dead_letters)]  # fmt: skip
    [letter] = letters
    assert (letter.kind, letter.outcome, letter.reason, letter.attempts) == (
        "timer",
        "retries_exhausted",
        "never works",
        2,
    )
    assert letter.source_offset is None and letter.key is not None
    assert letter.key.to_bytes() == b"doomed"
    latest = {r.key: r.value for r in await read_topic(settings, state_topic)}
    doomed = decode_entry(latest[b"doomed"])
    assert doomed.value == {"n": 0} and doomed.wake_at is None
