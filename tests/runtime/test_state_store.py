"""Changelog-backed keyed state: durable writes, restore before processing, expiry tombstones."""

from __future__ import annotations

import time

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, gid, produce, read_topic, wait_until
from worker.kafka import make_consumer
from worker.runtime import KeyContext, Record, StreamProcessor, UsageError
from worker.runtime.restore import RESTORE_CONSUMER_OPTIONS, restore_partitions
from worker.runtime.state import StateEntry, decode_entry, encode_entry


class Counter(NoTimers):
    """Counts records per key in state; remembers the state each record saw first."""

    def __init__(self, *, expire_after: float | None = None) -> None:
        self.seen_state: dict[int, object] = {}
        self.handled = 0
        self.expire_after = expire_after

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.seen_state.setdefault(record.offset, ctx.state)
        count = (ctx.state or {"n": 0})["n"] + 1
        expires = None if self.expire_after is None else time.time() + self.expire_after
        await ctx.set_state({"n": count}, expires_at=expires)
        assert ctx.state == {"n": count}
        self.handled += 1


async def test_state_survives_a_restart_and_is_restored_before_processing(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """Pre-existing changelog entries are visible to the very first record after assignment."""
    settings = await make_runtime_settings()
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    # 20,000 unrelated entries make the restore take a moment, then the key we will read.
    for partition in range(settings.pooul_topic_partitions):
        await produce(
            settings,
            state_topic,
            (
                (b"filler-%d-%d" % (partition, i), encode_entry(StateEntry({"n": 0})))
                for i in range(5000)
            ),
            partition=partition,
        )
    await produce(
        settings, state_topic, [(b"trade-7", encode_entry(StateEntry({"n": 41})))], partition=2
    )
    [(_, offset)] = await produce(settings, topic, [(b"trade-7", b"x")], partition=2)

    handler = Counter()
    processor = StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "st"),
        handler=handler,
        state_topic=state_topic,
    )
    async with processor:
        await wait_until(lambda: handler.handled >= 1, what="the first record handled")
        assert processor.snapshot().ready
        assert processor.snapshot().partitions[2].state_keys == 5001
    # The first record saw the restored entry: it was not handled before the restore ended.
    assert handler.seen_state[offset] == {"n": 41}

    # A second processor (a restart) restores the write of the first one.
    await produce(settings, topic, [(b"trade-7", b"y")], partition=2)
    handler2 = Counter()
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "st"),
        handler=handler2,
        state_topic=state_topic,
    ):
        await wait_until(lambda: handler2.handled == 1, what="the new record")
    assert handler2.seen_state[offset + 1] == {"n": 42}


async def test_expired_entries_are_tombstoned(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """An entry past expires_at reads as absent and a tombstone reaches the changelog."""
    settings = await make_runtime_settings()
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    await produce(settings, topic, [(b"short-lived", b"1")], partition=0)
    handler = Counter(expire_after=0.3)
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "exp"),
        handler=handler,
        state_topic=state_topic,
    ) as processor:
        await wait_until(lambda: handler.handled == 1, what="the first record")
        await wait_until(
            lambda: processor.snapshot().partitions[0].state_keys == 0, what="the entry to expire"
        )
        handler.expire_after = None
        await produce(settings, topic, [(b"short-lived", b"2")], partition=0)
        await wait_until(lambda: handler.handled == 2, what="the second record")
    assert handler.seen_state[1] is None, "the expired entry was still visible"
    changelog = [(r.key, r.value) for r in await read_topic(settings, state_topic)]
    assert (
        changelog[0][0] == b"short-lived" and decode_entry(changelog[0][1]).expires_at is not None
    )
    assert changelog[1] == (b"short-lived", None)
    assert decode_entry(changelog[2][1]).value == {"n": 1}


class Deleter(NoTimers):
    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.done = 0

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        if record.value == b"set":
            await ctx.set_state("v")
        else:
            await ctx.delete_state()
            assert ctx.state is None
        self.done += 1


async def test_delete_writes_a_tombstone_and_state_needs_a_topic(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """delete_state() writes a tombstone; a processor without a state topic refuses state writes."""
    settings = await make_runtime_settings()
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    await produce(settings, topic, [(b"k", b"set"), (b"k", b"delete")], partition=3)
    handler = Deleter()
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "del"),
        handler=handler,
        state_topic=state_topic,
    ):
        await wait_until(lambda: handler.done == 2, what="both records")
    changelog = [(r.key, r.value) for r in await read_topic(settings, state_topic)]
    assert changelog[-1] == (b"k", None)

    errors: list[BaseException] = []

    class Stateless(NoTimers):
        async def handle(self, record: Record, ctx: KeyContext) -> None:
            try:
                await ctx.set_state(1)
            except UsageError as exc:
                errors.append(exc)

    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "nostate"), handler=Stateless()
    ):
        await wait_until(lambda: len(errors) == 2, what="both records refused")


async def test_a_restore_reads_every_record_of_a_batch_handed_out_in_parts(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """200 changelog records written as few large batches, read back by a consumer that hands
    out 7 records per getmany: every key is restored (the restore ends on its position, not on
    the last record returned, which the embedded broker's batch-base end offset would fool)."""
    settings = await make_runtime_settings()
    state_topic = settings.pooul_topic_trade_state
    await produce(
        settings,
        state_topic,
        ((b"key-%03d" % i, encode_entry(StateEntry({"n": i}))) for i in range(200)),
        partition=1,
    )
    consumer = make_consumer(settings, **{**RESTORE_CONSUMER_OPTIONS, "max_poll_records": 7})
    await consumer.start()
    try:
        result = await restore_partitions(consumer, topic=state_topic, partitions=[1])
    finally:
        await consumer.stop()
    assert result.records == 200
    assert len(result.states[1]) == 200
