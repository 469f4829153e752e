"""Build and publish dead letters (schema: `schemas.dead_letter.DeadLetter`).

The processor awaits the acks=all write of a dead letter before the record counts as
finished, so the committed offset can only move past a record once it is either handled or
safely parked on the dead-letter topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer

from schemas.dead_letter import (
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SERVICE_HEADER,
    DeadLetter,
    DeadLetterHeader,
    EncodedBytes,
)
from worker.runtime.record import Record

__all__ = ["DeadLetterPublisher", "record_dead_letter", "timer_dead_letter", "without_payload"]

Outcome = Literal["permanent", "retries_exhausted"]

_MAX_DETAIL = 4000


def record_dead_letter(
    record: Record,
    *,
    service: str,
    outcome: Outcome,
    reason: str,
    detail: str,
    attempts: int,
    now: float,
) -> DeadLetter:
    return DeadLetter(
        id=f"{service}:{record.topic}:{record.partition}:{record.offset}",
        service=service,
        kind="record",
        outcome=outcome,
        reason=reason,
        detail=detail[:_MAX_DETAIL],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_timestamp_ms=record.timestamp_ms,
        key=None if record.key is None else EncodedBytes.from_bytes(record.key),
        value=None if record.value is None else EncodedBytes.from_bytes(record.value),
        headers=[
            DeadLetterHeader(name=n, value=EncodedBytes.from_bytes(v)) for n, v in record.headers
        ],
        attempts=attempts,
        failed_at=datetime.fromtimestamp(now, UTC),
    )


def timer_dead_letter(
    *,
    service: str,
    state_topic: str,
    partition: int,
    key: bytes,
    state: Any,
    wake_at: float,
    outcome: Outcome,
    reason: str,
    detail: str,
    attempts: int,
    now: float,
) -> DeadLetter:
    """A timer firing that failed for good: the value is the key's state as JSON."""
    return DeadLetter(
        id=f"{service}:timer:{state_topic}:{partition}:{key.hex()}:{wake_at!r}",
        service=service,
        kind="timer",
        outcome=outcome,
        reason=reason,
        detail=detail[:_MAX_DETAIL],
        source_topic=state_topic,
        source_partition=partition,
        key=EncodedBytes.from_bytes(key),
        value=EncodedBytes.from_bytes(orjson.dumps(state)),
        attempts=attempts,
        failed_at=datetime.fromtimestamp(now, UTC),
    )


def without_payload(letter: DeadLetter) -> DeadLetter:
    """The letter without the original value and headers (and a shorter detail): for an
    original too large to fit in a dead letter. The source coordinates still point at it."""
    omitted = len(letter.value.to_bytes()) if letter.value is not None else 0
    omitted += sum(len(h.name) + len(h.value.to_bytes()) for h in letter.headers)
    return letter.model_copy(
        update={
            "value": None,
            "headers": [],
            "detail": letter.detail[:1000],
            "payload_omitted_bytes": omitted,
        }
    )


class DeadLetterPublisher:
    """Writes dead letters with the original key and headers plus reason/service headers."""

    def __init__(self, *, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, letter: DeadLetter) -> None:
        """Write one dead letter and wait for the acks=all acknowledgement."""
        headers = [
            *letter.original_headers(),
            (DEAD_LETTER_REASON_HEADER, letter.reason.encode()),
            (DEAD_LETTER_SERVICE_HEADER, letter.service.encode()),
        ]
        key = None if letter.key is None else letter.key.to_bytes()
        await self._producer.send_and_wait(
            self.topic, letter.model_dump_json().encode(), key=key, headers=headers
        )
