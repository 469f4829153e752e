"""Small value types: records, errors, backoff and the dead-letter contract."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from schemas.dead_letter import DeadLetter, EncodedBytes, parse_dead_letter
from worker.runtime import Permanent, Record, RemoteUnavailable, Retry, StreamError
from worker.runtime.backoff import backoff_delay
from worker.runtime.deadletter import record_dead_letter, timer_dead_letter


def test_record_header_returns_first_match() -> None:
    """header() finds the first header of a name and None for a missing one."""
    record = Record("t", 0, 1, b"k", b"v", (("a", b"1"), ("b", b"2"), ("a", b"3")), 5)
    assert record.header("a") == b"1"
    assert record.header("zz") is None


def test_error_tree_and_retryable_flags() -> None:
    """RemoteUnavailable is a Retry, Permanent is not, and retryable is a property of the type."""
    assert issubclass(RemoteUnavailable, Retry)
    assert issubclass(Permanent, StreamError) and not issubclass(Permanent, Retry)
    assert RemoteUnavailable("down").retryable and Retry("later").retryable
    assert not Permanent("bad", "detail").retryable
    assert Retry("later", delay=2.0).delay == 2.0
    with pytest.raises(ValueError):
        Retry("later", delay=-1)


def test_backoff_grows_and_stays_within_bounds() -> None:
    """Delays lie in [ceiling/2, ceiling] with the ceiling doubling up to the maximum."""
    rng = random.Random(3)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0), (500, 30.0)):
        for _ in range(50):
            delay = backoff_delay(attempt, base=0.5, maximum=30.0, rng=rng)
            assert ceiling / 2 <= delay <= ceiling


def test_encoded_bytes_text_or_base64() -> None:
    """UTF-8 stays readable text, other bytes become base64; both round-trip exactly."""
    text = EncodedBytes.from_bytes("支付 ok".encode())
    binary = EncodedBytes.from_bytes(b"\xff\x00\xfe")
    assert text.encoding == "utf-8" and text.data == "支付 ok"
    assert binary.encoding == "base64"
    assert text.to_bytes() == "支付 ok".encode()
    assert binary.to_bytes() == b"\xff\x00\xfe"
    with pytest.raises(ValueError):
        EncodedBytes(encoding="base64", data="***").to_bytes()


def test_record_dead_letter_keeps_the_original_and_round_trips() -> None:
    """A record's dead letter carries key, value, headers and source, and parses back equal."""
    record = Record("in", 3, 42, b"trade-1", b"\x00binary", (("pooul-kind", b"notify"),), 1700)
    letter = record_dead_letter(
        record,
        service="trades",
        outcome="permanent",
        reason="invalid_signal",
        detail="no trade_id",
        attempts=1,
        now=1_700_000_000.0,
    )
    assert letter.id == "trades:in:3:42"
    assert letter.value is not None and letter.value.to_bytes() == b"\x00binary"
    assert letter.original_headers() == [("pooul-kind", b"notify")]
    assert letter.failed_at == datetime.fromtimestamp(1_700_000_000.0, UTC)
    assert parse_dead_letter(letter.model_dump_json().encode()) == letter


def test_timer_dead_letter_has_no_offset_and_the_state_as_value() -> None:
    """A timer's dead letter names the changelog partition and carries the state as JSON."""
    letter = timer_dead_letter(
        service="trades",
        state_topic="state",
        partition=2,
        key=b"trade-9",
        state={"phase": "pending"},
        wake_at=1.5,
        outcome="retries_exhausted",
        reason="error",
        detail="boom",
        attempts=5,
        now=10.0,
    )
    assert letter.kind == "timer" and letter.source_offset is None
    assert letter.value is not None and letter.value.to_bytes() == b'{"phase":"pending"}'
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter
