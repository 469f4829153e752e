"""Records on the dead-letter topic (`pooul.dead-letters.v1`): what could not be processed, and why.

A dead letter carries everything needed to inspect and replay the original record: its key,
value and headers byte for byte (UTF-8 text when they decode as such, base64 otherwise), where
it came from and why it failed. The Kafka record key is the original key; headers
`pooul-dead-letter-reason` and `pooul-dead-letter-service` allow filtering without parsing.

`id` is deterministic (service, source topic, partition, offset; for a timer the key and due
time), so a dead letter written twice after a crash is recognisably the same one.

A letter that would exceed the broker's message size (the original plus its encoding) is written
without the original value and headers (`payload_omitted_bytes` says how many bytes were left
out); such a letter points at the original by its source coordinates and is not replayed.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEAD_LETTER_REASON_HEADER",
    "DEAD_LETTER_SERVICE_HEADER",
    "DeadLetter",
    "DeadLetterHeader",
    "EncodedBytes",
    "parse_dead_letter",
]

DEAD_LETTER_REASON_HEADER = "pooul-dead-letter-reason"
DEAD_LETTER_SERVICE_HEADER = "pooul-dead-letter-service"


class EncodedBytes(BaseModel):
    """Raw bytes in JSON: `utf-8` text when the bytes are valid UTF-8, else `base64`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Literal["utf-8", "base64"]
    data: str

    @classmethod
    def from_bytes(cls, raw: bytes) -> EncodedBytes:
        try:
            return cls(encoding="utf-8", data=raw.decode("utf-8"))
        except UnicodeDecodeError:
            return cls(encoding="base64", data=base64.b64encode(raw).decode("ascii"))

    def to_bytes(self) -> bytes:
        """The original bytes; raises ValueError on malformed base64."""
        if self.encoding == "utf-8":
            return self.data.encode("utf-8")
        try:
            return base64.b64decode(self.data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"malformed base64: {exc}") from None


class DeadLetterHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: EncodedBytes


class DeadLetter(BaseModel):
    """One record (or timer firing) the stream runtime gave up on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="deterministic: same source and failure → same id")
    service: str = Field(description="the processor that gave up (e.g. `trades`)")
    kind: Literal["record", "timer"] = Field(
        description="`record`: an input record; `timer`: a key's timer firing (value = its state)"
    )
    outcome: Literal["permanent", "retries_exhausted"]
    reason: str = Field(description="short machine-readable cause, e.g. `invalid_signal`, `error`")
    detail: str = ""
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int | None = Field(default=None, ge=0, description="None for timers")
    source_timestamp_ms: int | None = None
    key: EncodedBytes | None
    value: EncodedBytes | None
    headers: list[DeadLetterHeader] = Field(default_factory=list)
    payload_omitted_bytes: int | None = Field(
        default=None,
        ge=0,
        description="set when the original value and headers were left out because the letter "
        "would exceed the broker's message size: their size in bytes; read the original at "
        "source_topic/source_partition/source_offset",
    )
    attempts: int = Field(ge=1, description="handler attempts made, the failing one included")
    failed_at: datetime

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(h.name, h.value.to_bytes()) for h in self.headers]


def parse_dead_letter(value: bytes) -> DeadLetter:
    """Parse a dead-letter record value; raises `pydantic.ValidationError` on bad input."""
    return DeadLetter.model_validate_json(value)
