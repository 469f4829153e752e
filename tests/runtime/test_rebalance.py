"""Two workers in one group: one leaves and joins again while records keep arriving."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, gid, key_of, read_topic, wait_until
from worker.kafka import make_producer
from worker.runtime import KeyContext, Record, StreamProcessor
from worker.runtime.state import decode_entry
from worker.settings import Settings


class Ledger:
    """What every owner did, shared by the handlers of all workers in the test."""

    def __init__(self) -> None:
        self.active: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.overlaps: list[tuple[int, str, str]] = []
        self.first_seen: dict[bytes, list[int]] = defaultdict(list)
        self.owners: dict[int, set[str]] = defaultdict(set)
        self.duplicates = 0


class CountingHandler(NoTimers):
    """Counts records per key in state, skipping redeliveries (offset <= last counted)."""

    def __init__(self, name: str, ledger: Ledger) -> None:
        self.name = name
        self.ledger = ledger
        self.rng = random.Random(name)

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        ledger, partition = self.ledger, record.partition
        others = [o for o, n in ledger.active[partition].items() if n and o != self.name]
        if others:
            ledger.overlaps.append((partition, self.name, others[0]))
        ledger.active[partition][self.name] += 1
        try:
            await asyncio.sleep(self.rng.random() * 0.003)
            state = ctx.state or {"n": 0, "last": -1}
            if record.offset <= state["last"]:
                ledger.duplicates += 1
                return
            ledger.first_seen[key_of(record)].append(record.offset)
            ledger.owners[partition].add(self.name)
            await ctx.set_state({"n": state["n"] + 1, "last": record.offset})
        finally:
            ledger.active[partition][self.name] -= 1


async def _produce_until(
    settings: Settings, topic: str, stop: asyncio.Event, sent: dict[bytes, list[int]]
) -> None:
    """About 400 records/s on 30 keys until `stop` is set (capped at 20,000)."""
    producer = make_producer(settings, linger_ms=1)
    await producer.start()
    try:
        for i in range(20_000):
            if stop.is_set():
                return
            key = b"trade-%d" % (i % 30)
            meta = await producer.send_and_wait(topic, b"%d" % i, key=key)
            sent[key].append(meta.offset)
            if i % 10 == 0:
                await asyncio.sleep(0.02)
    finally:
        await producer.stop()


async def test_leave_and_rejoin_keeps_state_and_loses_nothing(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """State moves with its partitions, every record is counted once, owners never overlap."""
    settings = await make_runtime_settings(pooul_max_in_flight=50)
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    ledger = Ledger()
    sent: dict[bytes, list[int]] = defaultdict(list)

    def worker(name: str) -> StreamProcessor:
        return StreamProcessor(
            settings=settings,
            topic=topic,
            group_id=gid(settings, "rebalance"),
            handler=CountingHandler(name, ledger),
            state_topic=state_topic,
            name=name,
        )

    stop_producing = asyncio.Event()
    producing = asyncio.create_task(_produce_until(settings, topic, stop_producing, sent))

    def handled_by(name: str) -> bool:
        return any(name in owners for owners in ledger.owners.values())

    try:
        async with worker("a") as a:
            async with worker("b"):
                await wait_until(lambda: handled_by("a") and handled_by("b"), what="work on both")
            # b has left the group: drained, committed, gone
            await wait_until(
                lambda: a.assigned_partitions() == [0, 1, 2, 3] and a.snapshot().ready,
                what="a owns all",
            )
            async with worker("b2") as b2:
                await wait_until(lambda: handled_by("b2"), what="b2 to join and take over work")
                assert 0 < len(b2.assigned_partitions()) < 4
                stop_producing.set()
                await asyncio.wait_for(asyncio.shield(producing), 10)
                total = sum(map(len, sent.values()))
                await wait_until(
                    lambda: sum(map(len, ledger.first_seen.values())) == total, what="every record"
                )
            await wait_until(lambda: a.snapshot().in_flight == 0, what="a idle")
    finally:
        stop_producing.set()
        await producing

    assert ledger.overlaps == [], "two owners handled one partition at once"
    assert {o for owners in ledger.owners.values() for o in owners} == {"a", "b", "b2"}
    for key, offsets in sent.items():
        assert ledger.first_seen[key] == offsets, f"{key!r}: records lost, repeated or out of order"
    latest = {r.key: r.value for r in await read_topic(settings, state_topic)}
    for key, offsets in sent.items():
        value = latest[key]
        assert value is not None
        assert decode_entry(value).value == {"n": len(offsets), "last": offsets[-1]}, (
            f"{key!r}: the count restarted, so state was not restored on the new owner"
        )


class StuckInA(NoTimers):
    """In worker `a` every record blocks (a handler hung past the revoke grace); anywhere else
    it is handled at once."""

    def __init__(self, name: str, done: dict[int, str], cancelled: list[int]) -> None:
        self.name = name
        self.done = done
        self.cancelled = cancelled

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        if self.name == "a":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(record.partition)
                raise
        self.done[record.partition] = self.name


async def test_a_handler_past_the_revoke_grace_is_cancelled_and_redone_by_the_next_owner(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """When `b` joins, `a` gives up the partitions it loses: their hung handler calls are
    cancelled once POOUL_REVOKE_GRACE ran out, nothing is committed past them, and `b` handles
    those records."""
    settings = await make_runtime_settings(pooul_revoke_grace=0.5)
    topic = settings.pooul_topic_order_requests
    producer = make_producer(settings)
    await producer.start()
    try:
        for partition in range(settings.pooul_topic_partitions):
            await producer.send_and_wait(topic, b"x", key=b"k%d" % partition, partition=partition)
    finally:
        await producer.stop()
    done: dict[int, str] = {}
    cancelled: list[int] = []

    def worker(name: str) -> StreamProcessor:
        return StreamProcessor(
            settings=settings,
            topic=topic,
            group_id=gid(settings, "grace"),
            handler=StuckInA(name, done, cancelled),
            name=name,
        )

    async with worker("a") as a:
        await wait_until(lambda: a.snapshot().in_flight == 4, what="a stuck on every partition")
        async with worker("b") as b:
            await wait_until(lambda: len(b.assigned_partitions()) > 0, what="b to get partitions")
            moved = set(b.assigned_partitions())
            await wait_until(lambda: set(done) == moved, what="b to redo the moved records")
            # b got those records at all: a committed nothing past its cancelled calls.
            assert set(cancelled) >= moved
            assert set(a.assigned_partitions()).isdisjoint(moved)
    assert {done[p] for p in moved} == {"b"}
