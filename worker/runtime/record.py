"""The record a handler sees: an immutable copy of what the broker delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One input record. `headers` keeps the broker's order and duplicates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        """The first header called `name`, or None."""
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None

    @classmethod
    def from_consumer_record(cls, message: Any) -> Record:
        """Copy an aiokafka `ConsumerRecord` (raw bytes, no deserializers)."""
        headers: Sequence[tuple[str, bytes]] = message.headers or ()
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=tuple(headers),
            timestamp_ms=message.timestamp,
        )
