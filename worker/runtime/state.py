"""Keyed state of one partition: an in-memory map plus its timer and expiry schedules.

The map is the cache of a compacted changelog topic co-partitioned with the input (see
`restore.py` for the way back): every change is written there first (acks=all) and applied to
memory only once acknowledged, so what a handler reads was durable.

Changelog record: key = state key, value = `encode_entry(entry)` (orjson of
`{"v": value, "wake_at": ..., "expires_at": ...}`), a deletion is a tombstone (value None).
Timers and expiries live inside the entries, so they survive restarts and rebalances; the
heaps are only indexes, rebuilt on restore, and may hold stale items that are checked on pop.

A restore must handle a million keys in seconds, so it does not parse values: it reads
`wake_at`/`expires_at` from the envelope's tail and keeps the rest as raw bytes, parsed on the
key's first access (`restored_entry`). That more than halves restore CPU and memory.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any, NamedTuple

import orjson

__all__ = ["PartitionState", "StateEntry", "decode_entry", "encode_entry", "restored_entry"]

log = logging.getLogger(__name__)


class StateEntry(NamedTuple):
    """A key's JSON-compatible value, its timer (Unix seconds) and its expiry (Unix seconds)."""

    value: Any
    wake_at: float | None = None
    expires_at: float | None = None


class RawEntry(NamedTuple):
    """A restored entry whose value is still the changelog bytes (parsed on first access)."""

    raw: bytes
    wake_at: float | None
    expires_at: float | None


_NUMBER = (int, float)
_HEAD = b'{"v":'
_WAKE = b',"wake_at":'
_EXPIRES = b',"expires_at":'


def encode_entry(entry: StateEntry) -> bytes:
    """The changelog value; raises TypeError when the value is not JSON-serialisable.

    Key order is part of the format: "v" first, so the timer fields form the value's tail.
    """
    return orjson.dumps(
        {"v": entry.value, "wake_at": entry.wake_at, "expires_at": entry.expires_at}
    )


def decode_entry(raw: bytes) -> StateEntry:
    """Parse a changelog value; raises ValueError on anything `encode_entry` cannot produce."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"changelog value is not JSON: {exc}") from None
    if not isinstance(document, dict) or "v" not in document:
        raise ValueError("changelog value is not a state envelope")
    wake_at = document.get("wake_at")
    expires_at = document.get("expires_at")
    if (wake_at is not None and type(wake_at) not in _NUMBER) or (
        expires_at is not None and type(expires_at) not in _NUMBER
    ):
        raise ValueError("changelog envelope has a non-numeric wake_at/expires_at")
    return StateEntry(document["v"], wake_at, expires_at)


def restored_entry(raw: bytes) -> RawEntry | StateEntry:
    """A changelog value as a restore keeps it: the timer fields read from the envelope's tail
    and the value left unparsed. Values in another layout are parsed in full (ValueError when
    corrupt). The tail is unambiguous: the envelope's own keys come after "v", and a number or
    null cannot contain `,"wake_at":`. This runs once per restored record: keep it lean.
    """
    if raw.startswith(_HEAD) and raw.endswith(b"}"):
        cut = raw.rfind(_WAKE)
        if cut > 0:
            wake_text, found, expires_text = raw[cut + len(_WAKE) : -1].partition(_EXPIRES)
            if found:
                try:
                    wake = None if wake_text == b"null" else float(wake_text)
                    expires = None if expires_text == b"null" else float(expires_text)
                except ValueError:
                    return decode_entry(raw)
                # x - x is 0.0 for finite numbers only (inf and nan give nan).
                if (wake is None or wake - wake == 0.0) and (
                    expires is None or expires - expires == 0.0
                ):
                    entry: RawEntry = _new_raw(RawEntry, (raw, wake, expires))
                    return entry
    return decode_entry(raw)


# `RawEntry(...)` goes through a Python-level __new__; a restore makes a million of them.
_new_raw: Any = tuple.__new__


class PartitionState:
    """The entries of one partition with timer and expiry heaps of `(time, key)`."""

    __slots__ = ("_entries", "_expiries", "_timers", "partition")

    def __init__(
        self, partition: int, entries: dict[bytes, StateEntry | RawEntry] | None = None
    ) -> None:
        self.partition = partition
        self._entries: dict[bytes, StateEntry | RawEntry] = entries if entries is not None else {}
        self._timers: list[tuple[float, bytes]] = []
        self._expiries: list[tuple[float, bytes]] = []
        for key, entry in self._entries.items():
            if entry.wake_at is not None:
                self._timers.append((entry.wake_at, key))
            if entry.expires_at is not None:
                self._expiries.append((entry.expires_at, key))
        heapq.heapify(self._timers)
        heapq.heapify(self._expiries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> StateEntry | None:
        """The live entry of `key`; an entry past its expiry reads as absent."""
        entry = self.peek(key)
        if entry is None or (entry.expires_at is not None and entry.expires_at <= now):
            return None
        return entry

    def peek(self, key: bytes) -> StateEntry | None:
        """The stored entry, expired or not (a restored one is parsed on this first access)."""
        entry = self._entries.get(key)
        if not isinstance(entry, RawEntry):
            return entry
        try:
            parsed = decode_entry(entry.raw)
        except ValueError as exc:
            log.error(
                "corrupt restored state entry; the key reads as absent",
                extra={"partition": self.partition, "key": key[:80], "error": str(exc)},
            )
            del self._entries[key]
            return None
        self._entries[key] = parsed
        return parsed

    def put(self, key: bytes, entry: StateEntry) -> None:
        """Apply an acknowledged write."""
        self._entries[key] = entry
        if entry.wake_at is not None:
            heapq.heappush(self._timers, (entry.wake_at, key))
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, key))

    def delete(self, key: bytes) -> None:
        """Apply an acknowledged tombstone."""
        self._entries.pop(key, None)

    def due_timers(self, now: float, limit: int) -> list[tuple[bytes, float]]:
        """Pop up to `limit` keys whose current timer is due, as `(key, wake_at)`."""
        return self._pop_due(self._timers, now, limit, timer=True)

    def due_expiries(self, now: float, limit: int) -> list[tuple[bytes, float]]:
        """Pop up to `limit` keys whose current entry expired, as `(key, expires_at)`."""
        return self._pop_due(self._expiries, now, limit, timer=False)

    def _pop_due(
        self, heap: list[tuple[float, bytes]], now: float, limit: int, *, timer: bool
    ) -> list[tuple[bytes, float]]:
        due: list[tuple[bytes, float]] = []
        entries = self._entries
        while heap and heap[0][0] <= now and len(due) < limit:
            at, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and (entry.wake_at if timer else entry.expires_at) == at:
                due.append((key, at))
        return due

    def next_deadline(self) -> float | None:
        """The earliest indexed timer or expiry (possibly stale: waking early is harmless)."""
        candidates = [heap[0][0] for heap in (self._timers, self._expiries) if heap]
        return min(candidates) if candidates else None
