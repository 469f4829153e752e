"""Poison records and exhausted retries go to the dead-letter topic; the partition moves on."""

from __future__ import annotations

import asyncio

import orjson

from schemas.dead_letter import DEAD_LETTER_REASON_HEADER, parse_dead_letter
from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, committed_offsets, gid, produce, read_topic, wait_until
from worker.dlq import replay_dead_letters
from worker.runtime import Handler, KeyContext, Permanent, Record, Retry, StreamProcessor
from worker.settings import Settings


class JsonHandler(NoTimers):
    """Parses JSON values; `{"fail": "retry"|"crash"}` keeps failing in that way."""

    def __init__(self) -> None:
        self.handled: list[tuple[bytes | None, int]] = []
        self.attempts: dict[int, list[int]] = {}

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.attempts.setdefault(record.offset, []).append(ctx.attempt)
        try:
            document = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError as exc:
            raise Permanent("unparseable", str(exc)) from None
        if document.get("fail") == "retry":
            raise Retry("not_yet")
        if document.get("fail") == "crash":
            raise ZeroDivisionError("bug in handler")
        self.handled.append((record.key, record.offset))


async def test_poison_record_is_dead_lettered_and_the_partition_continues(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """An unparseable record lands on the dead-letter topic with reason, source and original bytes."""
    settings = await make_runtime_settings()
    topic = settings.pooul_topic_order_requests
    await produce(settings, topic, [(b"trade-1", b'{"n": 1}')], partition=1)
    [(_, poison_offset)] = await produce(
        settings,
        topic,
        [(b"trade-1", b"\xff{not json")],
        partition=1,
        headers=[("pooul-kind", b"notify")],
    )
    after = await produce(
        settings, topic, [(b"trade-1", b'{"n": 2}'), (b"trade-2", b'{"n": 3}')], partition=1
    )
    handler = JsonHandler()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "dl"), handler=handler, name="orders"
    ) as p:
        await wait_until(lambda: len(handler.handled) == 3, what="the records around the poison")
        await wait_until(
            lambda: p.committed_offsets().get(1) == after[-1][1] + 1, what="commit past the poison"
        )
    assert sorted(handler.handled) == [
        (b"trade-1", 0),
        (b"trade-1", poison_offset + 1),
        (b"trade-2", poison_offset + 2),
    ]
    assert [o for k, o in handler.handled if k == b"trade-1"] == [0, poison_offset + 1]
    assert handler.attempts[poison_offset] == [1], "a permanent failure was retried"

    [dead] = await read_topic(settings, settings.pooul_topic_dead_letters)
    letter = parse_dead_letter(dead.value)
    assert dead.key == b"trade-1"
    assert (DEAD_LETTER_REASON_HEADER, b"unparseable") in dead.headers
    assert ("pooul-kind", b"notify") in dead.headers
    assert (
        letter.reason == "unparseable" and letter.outcome == "permanent" and letter.kind == "record"
    )
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        topic,
        1,
        poison_offset,
    )
    assert letter.attempts == 1 and letter.service == "orders"
    assert letter.value is not None and letter.value.to_bytes() == b"\xff{not json"
    assert letter.key is not None and letter.key.to_bytes() == b"trade-1"
    assert letter.original_headers() == [("pooul-kind", b"notify")]
    assert letter.detail, "no detail on why it was unparseable"
    assert (await committed_offsets(settings, gid(settings, "dl"), topic))[1] == after[-1][1] + 1


async def _run_until_committed(
    settings: Settings, topic: str, handler: Handler, group: str, offset: int, what: str
) -> None:
    """Run a processor on `topic` until partition 0's committed offset is `offset`."""
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, group), handler=handler, name="w"
    ) as p:
        await wait_until(lambda: p.committed_offsets().get(0) == offset, what=what)


async def test_out_of_retries_is_dead_lettered_with_the_attempt_count(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """Retry and unexpected exceptions are retried POOUL_MAX_ATTEMPTS times, then dead-lettered."""
    settings = await make_runtime_settings(pooul_max_attempts=3)
    topic = settings.pooul_topic_order_requests
    written = await produce(
        settings,
        topic,
        [(b"a", b'{"fail": "retry"}'), (b"b", b'{"fail": "crash"}'), (b"c", b'{"ok": 1}')],
        partition=0,
    )
    handler = JsonHandler()
    await _run_until_committed(
        settings, topic, handler, "dl2", 3, "all three finished and committed"
    )
    letters = {
        parse_dead_letter(r.value).source_offset: parse_dead_letter(r.value)
        for r in await read_topic(settings, settings.pooul_topic_dead_letters)
    }
    retry_offset, crash_offset, ok_offset = (o for _, o in written)
    assert set(letters) == {retry_offset, crash_offset}
    assert (
        letters[retry_offset].outcome == "retries_exhausted"
        and letters[retry_offset].reason == "not_yet"
    )
    assert (
        letters[crash_offset].reason == "error"
        and "ZeroDivisionError" in letters[crash_offset].detail
    )
    assert letters[retry_offset].attempts == letters[crash_offset].attempts == 3
    assert handler.attempts[retry_offset] == [1, 2, 3]
    assert handler.handled == [(b"c", ok_offset)]


class CancelledElsewhere(NoTimers):
    """The first attempt awaits a future that another task cancels (a shared client's call
    torn down under it); later attempts succeed."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.handled: list[int] = []

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        self.attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, shared.cancel)
            await shared
        self.handled.append(record.offset)


async def test_a_cancelled_awaitable_inside_a_handler_is_a_failure_to_retry(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """A CancelledError that is not the key task's own cancellation is retried like any error:
    the key's later records still run, in order, and the partition's commit moves past them."""
    settings = await make_runtime_settings(pooul_max_attempts=3)
    topic = settings.pooul_topic_order_requests
    written = await produce(settings, topic, [(b"a", b"1"), (b"a", b"2")], partition=0)
    handler = CancelledElsewhere()
    await _run_until_committed(
        settings, topic, handler, "dl3", 2, "both records finished and committed"
    )
    assert handler.handled == [offset for _, offset in written]
    assert handler.attempts == [1, 2, 1, 2]  # each record: cancelled once, then handled


async def test_a_record_too_large_for_a_dead_letter_is_dead_lettered_without_its_payload(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """A 900 KiB binary poison record would be a ~1.2 MB letter (base64), past the producer's
    1 MiB limit, which no retry fixes: the letter goes without the value and headers, says how
    many bytes it left out, and the partition moves on. Replay skips it (it would write an
    empty record); the original is still at the letter's source coordinates."""
    settings = await make_runtime_settings()
    topic = settings.pooul_topic_order_requests
    poison = bytes(range(256)) * (900 * 4)  # 900 KiB, not UTF-8
    written = await produce(
        settings,
        topic,
        [(b"big", poison), (b"c", b'{"ok": 1}')],
        headers=[("trace", b"t-1")],
        partition=0,
    )
    handler = JsonHandler()
    await _run_until_committed(settings, topic, handler, "dl4", 2, "both finished and committed")
    [letter] = [parse_dead_letter(r.value) for r in await read_topic(settings, settings.pooul_topic_dead_letters)]  # fmt: skip
    assert (letter.source_offset, letter.reason) == (written[0][1], "unparseable")
    assert letter.value is None and letter.headers == []
    assert letter.payload_omitted_bytes == len(poison) + len("trace") + len(b"t-1")
    outcome = await replay_dead_letters(settings, dry_run=True, from_beginning=True)
    assert outcome.replayed == [] and outcome.omitted_skipped == 1
