"""`pooul-worker dlq list|replay` against a real broker and real dead letters."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

from aiokafka import TopicPartition

from schemas.dead_letter import DeadLetter
from worker.cli import build_parser
from worker.dlq import (
    REPLAYED_FROM_HEADER,
    ReplayProgress,
    list_dead_letters,
    replay_dead_letters,
)
from worker.dlq_cli import ProgressBar, render_rows
from worker.kafka import make_consumer, make_producer
from worker.runtime.deadletter import DeadLetterPublisher, record_dead_letter, timer_dead_letter
from worker.runtime.record import Record


async def _park(settings, letters: list[DeadLetter]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        publisher = DeadLetterPublisher(producer=producer, topic=settings.pooul_topic_dead_letters)
        # Concurrent writes share producer batches: the reader must count records, not batches.
        await asyncio.gather(*(publisher.publish(letter) for letter in letters))
        await producer.send_and_wait(settings.pooul_topic_dead_letters, b"not json", key=b"x")
    finally:
        await producer.stop()


def _letter(settings, offset: int, reason: str, *, key: bytes = b"T1") -> DeadLetter:
    record = Record(
        topic=settings.pooul_topic_trade_signals,
        partition=1,
        offset=offset,
        key=key,
        value=b'{"kind": "notify", "n": %d}' % offset,
        headers=(("pooul-kind", b"notify"), ("binary", b"\xff\x00")),
        timestamp_ms=int(time.time() * 1000),
    )
    return record_dead_letter(
        record,
        service="trades",
        outcome="permanent",
        reason=reason,
        detail="test",
        attempts=1 if reason == "invalid_signal" else 5,
        now=time.time(),
    )


async def _read_all(settings, topic: str) -> list:
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        end = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def test_list_shows_every_letter_and_filters_by_reason(settings) -> None:
    """list returns each dead letter (and flags an unparseable record), filtered by reason."""
    timer = timer_dead_letter(
        service="trades",
        state_topic=settings.pooul_topic_trade_state,
        partition=0,
        key=b"T9",
        state={"s": 1},
        wake_at=1.0,
        outcome="retries_exhausted",
        reason="error",
        detail="boom",
        attempts=5,
        now=time.time(),
    )
    await _park(
        settings, [_letter(settings, 10, "invalid_signal"), _letter(settings, 11, "error"), timer]
    )

    rows = await list_dead_letters(settings)
    assert len(rows) == 4
    assert sum(1 for r in rows if r.letter is None) == 1
    only_invalid = await list_dead_letters(settings, reason="invalid_signal")
    assert [r.letter.source_offset for r in only_invalid] == [10]
    assert len(await list_dead_letters(settings, limit=2)) == 2

    table = render_rows(rows)
    assert "invalid_signal" in table and f"{settings.pooul_topic_trade_signals}/1/10" in table
    assert "(unparseable)" in table and "timer" in table and "4 dead letter(s)" in table


async def test_replay_restores_records_once_and_again_from_the_beginning(settings) -> None:
    """Replay writes the original key, value and headers plus pooul-replayed-from, only once."""
    await _park(settings, [_letter(settings, 20, "error"), _letter(settings, 21, "invalid_signal")])
    group = f"dlq-test-{uuid.uuid4().hex[:8]}"

    dry = await replay_dead_letters(settings, dry_run=True, group=group)
    assert len(dry.replayed) == 2 and dry.unparseable == 1
    assert await _read_all(settings, settings.pooul_topic_trade_signals) == []

    first = await replay_dead_letters(settings, reason="error", group=group)
    assert [target for _, target in first.replayed] == [settings.pooul_topic_trade_signals]
    assert first.filtered_out == 1
    [record] = await _read_all(settings, settings.pooul_topic_trade_signals)
    assert record.key == b"T1"
    assert record.value == b'{"kind": "notify", "n": 20}'
    headers = dict(record.headers)
    assert headers["pooul-kind"] == b"notify" and headers["binary"] == b"\xff\x00"
    assert headers[REPLAYED_FROM_HEADER].startswith(settings.pooul_topic_dead_letters.encode())

    again = await replay_dead_letters(settings, reason="error", group=group)
    assert again.replayed == [] and again.scanned == 0
    assert len(await _read_all(settings, settings.pooul_topic_trade_signals)) == 1

    restart = await replay_dead_letters(settings, reason="error", group=group, from_beginning=True)
    assert len(restart.replayed) == 1
    assert len(await _read_all(settings, settings.pooul_topic_trade_signals)) == 2


async def test_replay_to_another_topic_and_refusals(settings) -> None:
    """--to sends letters to the chosen topic; a missing topic or the DLQ itself is refused."""
    await _park(settings, [_letter(settings, 30, "error", key=b"T30")])
    group = f"dlq-test-{uuid.uuid4().hex[:8]}"
    outcome = await replay_dead_letters(
        settings, to=settings.pooul_topic_order_requests, group=group
    )
    assert [target for _, target in outcome.replayed] == [settings.pooul_topic_order_requests]
    [record] = await _read_all(settings, settings.pooul_topic_order_requests)
    assert record.key == b"T30"

    parser = build_parser()
    missing = parser.parse_args(["dlq", "replay", "--to", f"missing-{uuid.uuid4().hex}"])
    assert await _in_thread(missing.run, missing, settings) == 1
    loop = parser.parse_args(["dlq", "replay", "--to", settings.pooul_topic_dead_letters])
    assert await _in_thread(loop.run, loop, settings) == 1


async def test_cli_list_and_dry_run_print_tables(settings, capsys) -> None:
    """The list and replay sub-commands print their table and summary."""
    await _park(settings, [_letter(settings, 40, "error")])
    parser = build_parser()
    args = parser.parse_args(["dlq", "list", "--reason", "error"])
    assert await _in_thread(args.run, args, settings) == 0
    out = capsys.readouterr().out
    assert "error" in out and "1 dead letter(s)" in out
    args = parser.parse_args(["dlq", "replay", "--dry-run", "--group", f"g-{uuid.uuid4().hex}"])
    assert await _in_thread(args.run, args, settings) == 0
    out = capsys.readouterr().out
    assert "would replay 1 dead letter(s)" in out and "nothing written" in out


async def _in_thread(fn, *args):
    """Run a CLI action (which calls asyncio.run) outside the test's event loop."""
    return await asyncio.to_thread(fn, *args)


def test_progress_bar_draws_only_for_long_runs() -> None:
    """Short replays stay quiet; long ones draw a bar ending at the total."""
    quiet, loud = io.StringIO(), io.StringIO()
    ProgressBar(stream=quiet)(ReplayProgress(scanned=5, total=10, replayed=5))
    bar = ProgressBar(stream=loud, min_total=100)
    bar(ReplayProgress(scanned=1000, total=1000, replayed=990))
    assert quiet.getvalue() == ""
    assert "1000/1000 dead letters read, 990 replayed" in loud.getvalue()
