"""Keyed state of one partition: an in-memory map plus its timer and expiry schedules.

The map is the cache of a compacted changelog topic co-partitioned with the input (see
`restore.py` for the way back): every change is written there first (acks=all) and applied to
memory only once acknowledged, so what a handler reads was durable.

Changelog record: key = state key, value = `encode_entry(entry)` (orjson of
`{"v": value, "wake_at": ..., "expires_at": ...}`), a deletion is a tombstone (value None).
Timers and expiries live inside the entries, so they survive restarts and rebalances; the
heaps are only indexes, rebuilt on restore, and may hold stale items that are checked on pop.

Memory holds each entry as its changelog bytes plus its timer fields (`Stored`), and parses
the value on every read (~2 µs for a trade). The garbage collector never stops tracking a
named tuple or a tuple holding a dict, so a store of parsed values made every full collection
walk every key (50 ms per 300,000 trades on an idle core, repeated as the store grows); a plain
tuple of bytes and floats is untracked after its first collection (3.8 ms for the same store),
and the bytes take about half the memory of the parsed dict. A restore does not parse values
either: it reads `wake_at`/`expires_at` from the envelope's tail (`restored_entry`), so a
million keys restore in seconds.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any, NamedTuple, cast

import orjson

__all__ = [
    "PartitionState",
    "StateEntry",
    "Stored",
    "decode_entry",
    "encode_entry",
    "restored_entry",
]

log = logging.getLogger(__name__)


class StateEntry(NamedTuple):
    """A key's JSON-compatible value, its timer (Unix seconds) and its expiry (Unix seconds)."""

    value: Any
    wake_at: float | None = None
    expires_at: float | None = None


# An entry as memory keeps it: (changelog bytes, wake_at, expires_at). A plain tuple on
# purpose: the collector untracks exact tuples of untracked items, never named tuples.
Stored = tuple[bytes, float | None, float | None]


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


def restored_entry(raw: bytes) -> Stored | StateEntry:
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
                    return (raw, wake, expires)
    return decode_entry(raw)


def _stored(entry: StateEntry, encoded: bytes | None = None) -> Stored:
    """How memory keeps `entry`; `encoded` is `encode_entry(entry)` when already made."""
    raw = encode_entry(entry) if encoded is None else encoded
    # A copy: orjson's output keeps its whole ~4 KiB write buffer allocated (RSS-measured); an
    # exact-size copy of a trade's ~420 bytes is 10× smaller and costs ~0.2 µs.
    return (bytes(memoryview(raw)), entry.wake_at, entry.expires_at)


# A heap is compacted when it holds more than this many items per entry (plus the slack).
_COMPACT_FACTOR = 2
_COMPACT_SLACK = 1024


class PartitionState:
    """The entries of one partition with timer and expiry heaps of `(time, key)`."""

    __slots__ = ("_entries", "_expiries", "_timers", "partition")

    def __init__(
        self, partition: int, entries: dict[bytes, StateEntry | Stored] | None = None
    ) -> None:
        """`entries` (a restore's) is taken over; parsed ones are stored as their bytes."""
        self.partition = partition
        self._entries: dict[bytes, Stored] = {}
        self._timers: list[tuple[float, bytes]] = []
        self._expiries: list[tuple[float, bytes]] = []
        if entries:
            for key, entry in entries.items():
                if isinstance(entry, StateEntry):
                    entry = entries[key] = _stored(entry)
                if entry[1] is not None:
                    self._timers.append((entry[1], key))
                if entry[2] is not None:
                    self._expiries.append((entry[2], key))
            self._entries = cast(dict[bytes, Stored], entries)
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
        """The stored entry, expired or not, its value freshly parsed (callers may change it)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            return decode_entry(entry[0])
        except ValueError as exc:
            log.error(
                "corrupt restored state entry; the key reads as absent",
                extra={"partition": self.partition, "key": key[:80], "error": str(exc)},
            )
            del self._entries[key]
            return None

    def put(self, key: bytes, entry: StateEntry, encoded: bytes | None = None) -> None:
        """Apply an acknowledged write; `encoded` is `encode_entry(entry)` when already made."""
        self._entries[key] = _stored(entry, encoded)
        if entry.wake_at is not None:
            heapq.heappush(self._timers, (entry.wake_at, key))
            if len(self._timers) > _COMPACT_FACTOR * len(self._entries) + _COMPACT_SLACK:
                self._timers = self._current(self._timers, slot=1)
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, key))
            if len(self._expiries) > _COMPACT_FACTOR * len(self._entries) + _COMPACT_SLACK:
                self._expiries = self._current(self._expiries, slot=2)

    def _current(self, heap: list[tuple[float, bytes]], *, slot: int) -> list[tuple[float, bytes]]:
        """`heap` without its stale items (superseded or deleted entries) and duplicates.

        Every write pushes an item and stale ones only leave when they come due — with
        week-long expiries that would be one item per write, not per key. Nothing is added
        here, so a timer already popped (queued, not yet run) cannot come back.
        """
        entries = self._entries
        seen: set[bytes] = set()
        kept: list[tuple[float, bytes]] = []
        for at, key in heap:
            entry = entries.get(key)
            if entry is not None and entry[slot] == at and key not in seen:
                seen.add(key)
                kept.append((at, key))
        heapq.heapify(kept)
        return kept

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
            if entry is not None and entry[1 if timer else 2] == at:
                due.append((key, at))
        return due

    def next_deadline(self) -> float | None:
        """The earliest indexed timer or expiry (possibly stale: waking early is harmless)."""
        candidates = [heap[0][0] for heap in (self._timers, self._expiries) if heap]
        return min(candidates) if candidates else None
