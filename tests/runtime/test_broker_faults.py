"""Faults of single Kafka requests (the broker up, one kind of request failing): offset commits,
dead-letter writes and the state restore each fail for a while, and nothing is skipped or lost.

The requests are cut by `tests.fixtures.kafka_faults.KafkaFaultProxy` in front of a private
broker, so these tests skip against an external one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.dead_letter import parse_dead_letter
from tests.fixtures.broker import base_settings
from tests.fixtures.kafka_faults import (
    LIST_OFFSETS,
    OFFSET_COMMIT,
    PRODUCE,
    TOPIC_AUTHORIZATION_FAILED,
    KafkaFaultProxy,
)
from tests.runtime.helpers import (
    FAST,
    NoTimers,
    committed_offsets,
    gid,
    produce,
    read_topic,
    wait_until,
)
from worker.kafka import make_producer
from worker.runtime import (
    Handler,
    KeyContext,
    Permanent,
    Record,
    RemoteUnavailable,
    StreamProcessor,
    commits,
)
from worker.runtime.restore import RESTORE_CONSUMER_OPTIONS
from worker.runtime.state import StateEntry, encode_entry
from worker.settings import Settings
from worker.topics import create_topics


async def _settings(proxy: KafkaFaultProxy, **overrides: Any) -> Settings:
    settings = base_settings(proxy.bootstrap_servers, **{**FAST, **overrides})
    await create_topics(settings)
    return settings


class Recorder(NoTimers):
    """Records (key, offset) of each handled record; a value of `poison` is a permanent failure."""

    def __init__(self) -> None:
        self.handled: list[tuple[bytes | None, int]] = []
        self.seen_state: dict[int, object] = {}

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        if record.value == b"poison":
            raise Permanent("unparseable", "the test's poison record")
        self.seen_state[record.offset] = ctx.state
        self.handled.append((record.key, record.offset))


class Forwarder(NoTimers):
    """Writes each record's value, same key, to `out`."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.attempts = 0
        self.errors: list[str] = []  # how each failed write was reported

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.attempts += 1
        try:
            await ctx.send(self.out, record.value, key=record.key)
        except RemoteUnavailable as exc:
            self.errors.append(str(exc))
            raise


@contextlib.asynccontextmanager
async def _impatient_processor(
    settings: Settings, handler: Handler, group: str
) -> AsyncIterator[StreamProcessor]:
    """A processor on the order-requests topic whose producer gives up on a write after 1 s
    instead of 40, so a write the proxy keeps cutting fails within the test as it would after
    the default timeout."""
    producer: AIOKafkaProducer = make_producer(settings, linger_ms=0, request_timeout_ms=1000)
    await producer.start()
    try:
        async with StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_order_requests,
            group_id=gid(settings, group),
            handler=handler,
            name="w",
            producer=producer,
        ) as processor:
            yield processor
    finally:
        await producer.stop()


def _sample(processor: StreamProcessor, name: str, **labels: str) -> float:
    value = processor.registry.get_sample_value(name, {"worker": processor.name, **labels})
    return value or 0.0


def _commits(processor: StreamProcessor, result: str) -> float:
    return _sample(processor, "pooul_runtime_commits_total", result=result)


async def test_failed_commits_are_counted_and_a_restart_redoes_what_they_did_not_cover(
    kafka_faults: KafkaFaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offset commits fail (each one's connection is cut): records are still handled, each
    failed commit is counted and the broker keeps no offset. A worker stopped then leaves the
    records to its successor, which handles them again and commits once commits pass."""
    monkeypatch.setattr(commits, "COMMIT_TIMEOUT", 1.0)
    settings = await _settings(kafka_faults)
    topic = settings.pooul_topic_order_requests
    group = gid(settings, "commits")
    written = await produce(settings, topic, [(b"k%d" % i, b"{}") for i in range(6)], partition=0)
    kafka_faults.cut(OFFSET_COMMIT)

    first = Recorder()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=group, handler=first, name="w"
    ) as processor:
        await wait_until(lambda: len(set(first.handled)) == 6, what="the records handled")
        await wait_until(lambda: _commits(processor, "failed") >= 2, what="two failed commits")
        assert processor.committed_offsets().get(0) is None
        assert _commits(processor, "ok") == 0
    assert kafka_faults.failed[OFFSET_COMMIT] >= 2
    assert (await committed_offsets(settings, group, topic))[0] is None

    kafka_faults.heal()
    second = Recorder()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=group, handler=second, name="w"
    ) as processor:
        end = written[-1][1] + 1
        await wait_until(lambda: processor.committed_offsets().get(0) == end, what="a commit")
    # All six again (a rebalance meanwhile may have made `first` handle some twice: allowed).
    assert {o for _, o in second.handled} == {o for _, o in written}, "a record was skipped"
    assert (await committed_offsets(settings, group, topic))[0] == end


async def test_a_dead_letter_that_cannot_be_written_holds_the_partition_until_it_is(
    kafka_faults: KafkaFaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes to the dead-letter topic fail: the records after the poison one are handled, but
    the commit stays at the poison record and the write is retried (each attempt a timeout of
    the producer, then ours); once writes pass the letter lands and the commit moves on."""
    caplog.set_level(logging.ERROR, logger="worker.runtime")
    settings = await _settings(kafka_faults)
    topic, dead_letters = settings.pooul_topic_order_requests, settings.pooul_topic_dead_letters
    [(_, poison)] = await produce(settings, topic, [(b"bad", b"poison")], partition=0)
    after = await produce(settings, topic, [(b"good", b"{}")], partition=0)
    kafka_faults.cut(PRODUCE, naming=dead_letters)

    handler = Recorder()
    async with _impatient_processor(settings, handler, "dl-fault") as processor:
        await wait_until(lambda: handler.handled == [(b"good", after[0][1])], what="handled")
        await wait_until(
            lambda: "dead letter not written yet; retrying" in caplog.messages,
            what="a failed dead-letter write retried",
        )
        assert processor.committed_offsets().get(0) in (None, poison)
        assert await read_topic(settings, dead_letters) == []

        kafka_faults.heal()
        await wait_until(
            lambda: processor.committed_offsets().get(0) == after[-1][1] + 1,
            what="the commit past the poison record",
        )
    assert kafka_faults.failed[PRODUCE] >= 2
    letters = [parse_dead_letter(r.value) for r in await read_topic(settings, dead_letters)]
    assert letters, "the dead letter was never written"
    assert {(d.id, d.source_offset, d.reason) for d in letters} == {
        (letters[0].id, poison, "unparseable")
    }


@pytest.mark.parametrize("fault", ["kafka_unavailable", "kafka_not_authorised"])
async def test_outputs_that_cannot_be_written_are_an_outage_not_a_reason_to_dead_letter(
    kafka_faults: KafkaFaultProxy, fault: str
) -> None:
    """Writes to the handler's output topic fail — each a producer timeout, or refused as not
    authorised (an ACL mistake would fail every record alike): however many attempts fail, none
    counts against POOUL_MAX_ATTEMPTS (2 here) — the breaker opens, the commit stays, nothing is
    dead-lettered — and once writes pass every output is written."""
    settings = await _settings(
        kafka_faults, pooul_max_attempts=2, pooul_circuit_failure_threshold=2
    )
    topic, out = settings.pooul_topic_order_requests, settings.pooul_topic_order_results
    written = await produce(
        settings, topic, [(b"k%d" % i, b"v%d" % i) for i in range(4)], partition=0
    )
    if fault == "kafka_not_authorised":
        kafka_faults.deny_produce(TOPIC_AUTHORIZATION_FAILED, naming=out)
    else:
        kafka_faults.cut(PRODUCE, naming=out)
    handler = Forwarder(out)
    async with _impatient_processor(settings, handler, "out-fault") as processor:
        await wait_until(
            lambda: _sample(processor, "pooul_runtime_circuit_opened_total") >= 2,
            what="the breaker opened twice",
        )
        assert handler.errors and all(fault in e for e in handler.errors), handler.errors
        assert processor.committed_offsets().get(0) in (None, 0)

        kafka_faults.heal()
        end = written[-1][1] + 1
        await wait_until(lambda: processor.committed_offsets().get(0) == end, what="a commit")
    assert kafka_faults.failed[PRODUCE] >= 2
    outputs = await read_topic(settings, out)
    assert {(r.key, r.value) for r in outputs} == {(b"k%d" % i, b"v%d" % i) for i in range(4)}
    assert await read_topic(settings, settings.pooul_topic_dead_letters) == []


async def test_a_state_restore_that_fails_is_retried_and_nothing_runs_before_it_ends(
    kafka_faults: KafkaFaultProxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The changelog's offsets cannot be read for a while: the restore fails (a timeout),
    is retried from the beginning, and the first record sees the whole restored state."""
    monkeypatch.setitem(RESTORE_CONSUMER_OPTIONS, "request_timeout_ms", 1000)
    caplog.set_level(logging.WARNING, logger="worker.runtime")
    settings = await _settings(kafka_faults)
    topic, state_topic = settings.pooul_topic_trade_signals, settings.pooul_topic_trade_state
    await produce(
        settings,
        state_topic,
        [(b"k%d" % i, encode_entry(StateEntry({"n": i}))) for i in range(200)],
        partition=1,
    )
    [(_, offset)] = await produce(settings, topic, [(b"k7", b"x")], partition=1)
    kafka_faults.cut(LIST_OFFSETS, naming=state_topic)

    handler = Recorder()
    async with StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "restore-fault"),
        handler=handler,
        state_topic=state_topic,
        name="w",
    ) as processor:
        await wait_until(
            lambda: caplog.messages.count("state restore failed; retrying") >= 2,
            what="two failed restores",
        )
        assert handler.handled == [], "a record was handled before its state was restored"
        kafka_faults.heal()
        await wait_until(lambda: len(handler.handled) == 1, what="the record handled")
        assert processor.snapshot().partitions[1].state_keys == 200
    assert kafka_faults.failed[LIST_OFFSETS] >= 2
    assert handler.seen_state[offset] == {"n": 7}
