"""start/stop/run contract of the processor and clear errors on bad configuration."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import NewTopic

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, gid, produce, wait_until
from worker.kafka import make_admin
from worker.runtime import KeyContext, Record, StreamProcessor, UsageError


class Collect(NoTimers):
    def __init__(self) -> None:
        self.handled = 0

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.handled += 1


async def test_start_once_stop_twice_and_run_until_stopped(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """A second start() is refused, run() returns once stop() ran, and stop() twice is harmless."""
    settings = await make_runtime_settings()
    topic = settings.pooul_topic_order_requests
    await produce(settings, topic, [(b"k", b"v")])
    handler = Collect()
    processor = StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "life"), handler=handler
    )
    with pytest.raises(UsageError):
        await processor.run()
    await processor.start()
    try:
        with pytest.raises(UsageError):
            await processor.start()
        runner = asyncio.create_task(processor.run())
        await wait_until(lambda: handler.handled == 1, what="the record")
        assert not runner.done()
        processor.request_stop()
        await asyncio.wait_for(runner, 10)
        assert processor.phase == "stopped"
    finally:
        await processor.stop()
    await processor.stop()


async def test_stop_before_start_is_harmless(make_runtime_settings: RuntimeSettingsFactory) -> None:
    """stop() on a never-started processor does nothing and leaves it stopped."""
    settings = await make_runtime_settings()
    processor = StreamProcessor(
        settings=settings,
        topic=settings.pooul_topic_order_requests,
        group_id=gid(settings, "x"),
        handler=Collect(),
    )
    await processor.stop()
    assert processor.phase == "stopped"


async def test_missing_or_misaligned_topics_fail_fast(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """An absent input topic or a changelog with another partition count stops start() clearly."""
    settings = await make_runtime_settings()
    missing = StreamProcessor(
        settings=settings,
        topic="no-such-topic-here",
        group_id=gid(settings, "m"),
        handler=Collect(),
    )
    with pytest.raises(UsageError, match="does not exist"):
        await missing.start()
    assert missing.phase == "stopped"

    narrow = f"{settings.pooul_topic_order_state}.narrow"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(narrow, 2, 1)])
    finally:
        await admin.close()
    misaligned = StreamProcessor(
        settings=settings,
        topic=settings.pooul_topic_order_requests,
        group_id=gid(settings, "m2"),
        handler=Collect(),
        state_topic=narrow,
    )
    with pytest.raises(UsageError, match="co-partitioned"):
        await misaligned.start()


def test_static_membership_reaches_the_consumer() -> None:
    """POOUL_GROUP_INSTANCE_ID becomes the consumer's group_instance_id; the rebalance timeout
    covers the whole revoke: the grace for handler calls, the bounded commit and the producer
    flush (grace + 5 s)."""
    from worker.settings import Settings

    settings = Settings(
        pooul_group_instance_id="trades-0", pooul_revoke_grace=20.0, pooul_session_timeout=10.0
    )
    processor = StreamProcessor(
        settings=settings, topic="t", group_id=gid(settings, "g"), handler=Collect()
    )
    options = processor._consumer_options()
    assert options["group_instance_id"] == "trades-0"
    assert options["session_timeout_ms"] == 10_000
    assert options["rebalance_timeout_ms"] >= (20 + 10 + 20 + 5) * 1000
    # The JoinGroup request is held while members revoke: it must outlast the rebalance.
    assert options["request_timeout_ms"] > options["rebalance_timeout_ms"]
