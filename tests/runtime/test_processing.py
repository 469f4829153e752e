"""Key-ordered concurrent consumption, safe commits and backpressure against a real broker."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, committed_offsets, gid, key_of, produce, wait_until
from worker.runtime import KeyContext, Record, StreamProcessor


class OrderWatcher(NoTimers):
    """Records handled per key and checks that one key never runs twice at once."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: dict[bytes, list[int]] = defaultdict(list)
        self.active: dict[bytes, int] = defaultdict(int)
        self.violations = 0
        self.running = 0
        self.max_running = 0
        self.handled = 0

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        key = key_of(record)
        self.active[key] += 1
        if self.active[key] > 1:
            self.violations += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.rng.random() * 0.004)
            self.seen[key].append(record.offset)
            self.handled += 1
        finally:
            self.running -= 1
            self.active[key] -= 1


async def test_same_key_order_holds_under_heavy_concurrency(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """3,000 records on 40 keys with random delays: per key strictly in offset order, keys overlap."""
    settings = await make_runtime_settings(pooul_max_in_flight=300)
    topic = settings.pooul_topic_order_requests
    written = await produce(
        settings, topic, ((b"key-%d" % (i % 40), b"%d" % i) for i in range(3000))
    )
    handler = OrderWatcher(seed=11)
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "order"), handler=handler
    ):
        await wait_until(lambda: handler.handled >= 3000, what="all records handled")
    assert handler.violations == 0
    assert handler.handled == 3000
    assert 1 < handler.max_running <= 300
    expected: dict[bytes, list[int]] = defaultdict(list)
    for i, (_, offset) in enumerate(written):
        expected[b"key-%d" % (i % 40)].append(offset)
    assert handler.seen == expected, (
        "a key's records were handled out of order, twice or not at all"
    )


class Blocker(NoTimers):
    """Blocks forever on key `stuck` until released; handles everything else at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.handled: list[int] = []
        self.stuck_started = asyncio.Event()

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        if record.key == b"stuck":
            self.stuck_started.set()
            await self.release.wait()
        self.handled.append(record.offset)


async def test_commits_never_pass_an_unfinished_record(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """With one record that never finishes, the committed offset stays on it while later ones finish."""
    settings = await make_runtime_settings(pooul_shutdown_grace=0.2)
    topic = settings.pooul_topic_order_requests
    await produce(settings, topic, [(b"before-%d" % i, b"x") for i in range(5)], partition=0)
    [(_, stuck_offset)] = await produce(settings, topic, [(b"stuck", b"x")], partition=0)
    later = await produce(
        settings, topic, [(b"after-%d" % i, b"x") for i in range(200)], partition=0
    )
    handler = Blocker()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "safe"), handler=handler
    ) as processor:
        await wait_until(lambda: len(handler.handled) == 205, what="all other records handled")
        await wait_until(
            lambda: processor.committed_offsets().get(0) == stuck_offset,
            what="commit up to the stuck record",
        )
        await asyncio.sleep(0.3)  # several commit intervals later
        assert (await committed_offsets(settings, gid(settings, "safe"), topic))[0] == stuck_offset
        assert processor.snapshot().partitions[0].unfinished == 1
    # Stopped with the record still unfinished: the commit must not have moved past it.
    assert (await committed_offsets(settings, gid(settings, "safe"), topic))[0] == stuck_offset

    handler2 = Blocker()
    handler2.release.set()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "safe"), handler=handler2
    ) as processor:
        await wait_until(lambda: stuck_offset in handler2.handled, what="the stuck record redone")
        await wait_until(lambda: len(handler2.handled) == 201, what="the later records redone")
        await wait_until(
            lambda: processor.committed_offsets().get(0) == later[-1][1] + 1,
            what="commit to the end",
        )
    assert (await committed_offsets(settings, gid(settings, "safe"), topic))[0] == later[-1][1] + 1


class Gate(NoTimers):
    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.running = 0
        self.max_running = 0
        self.handled = 0

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.open.wait()
            self.handled += 1
        finally:
            self.running -= 1


async def test_fetching_pauses_at_the_in_flight_budget(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """With every handler blocked, at most POOUL_MAX_IN_FLIGHT records are taken and fetching pauses."""
    settings = await make_runtime_settings(pooul_max_in_flight=8)
    topic = settings.pooul_topic_order_requests
    await produce(settings, topic, ((b"k%d" % i, b"x") for i in range(120)))
    handler = Gate()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "bp"), handler=handler
    ) as processor:
        await wait_until(lambda: handler.running == 8, what="the budget to fill")
        await asyncio.sleep(0.4)
        snap = processor.snapshot()
        assert snap.in_flight == 8
        assert handler.max_running == 8
        assert processor._consumer is not None
        assert processor._consumer.paused() == processor._consumer.assignment()
        handler.open.set()
        await wait_until(lambda: handler.handled == 120, what="all records after the gate opened")
        assert handler.max_running <= 8
