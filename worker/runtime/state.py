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


def _time(entry: Stored, slot: int) -> float | None:
    return entry[1] if slot == 1 else entry[2]


class _TimeIndex:
    """Keys by the time something is due for them (a timer, an expiry): a lazily kept heap.

    At most about one `(time, key)` item per key however often keys are written — with
    week-long expiries, an item per write would grow memory with writes, not keys. A write
    that moves a key's time later pushes nothing: the key's earlier item, when it comes due,
    is pushed again at the key's time then. Only a key new to the index, a time moved earlier,
    or a key whose due item was handed out (`taken`, until its next write) pushes an item.
    So every key with a time that is not taken has an item at or before that time; stale items
    are dropped as they come due, and a key is handed out at most once per write.
    """

    __slots__ = ("_heap", "_slot", "_taken")

    def __init__(self, slot: int, entries: dict[bytes, Stored]) -> None:
        self._slot = slot  # 1: wake_at, 2: expires_at
        self._heap: list[tuple[float, bytes]] = []
        for key, entry in entries.items():
            at = _time(entry, slot)
            if at is not None:
                self._heap.append((at, key))
        heapq.heapify(self._heap)
        self._taken: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def written(self, key: bytes, old: Stored | None, at: float | None) -> None:
        """`key`'s entry was replaced (`old` before, `at` its new time)."""
        if at is None:
            self._taken.discard(key)
            return
        old_at = None if old is None else _time(old, self._slot)
        if key in self._taken or old_at is None or at < old_at:
            self._taken.discard(key)
            heapq.heappush(self._heap, (at, key))

    def deleted(self, key: bytes) -> None:
        self._taken.discard(key)

    def pop_due(
        self, entries: dict[bytes, Stored], now: float, limit: int
    ) -> list[tuple[bytes, float]]:
        """Hand out up to `limit` keys whose current time is due, as `(key, time)`."""
        heap, slot, taken = self._heap, self._slot, self._taken
        due: list[tuple[bytes, float]] = []
        while heap and heap[0][0] <= now and len(due) < limit:
            at, key = heapq.heappop(heap)
            entry = entries.get(key)
            current = None if entry is None else _time(entry, slot)
            if current is None:
                continue  # no time any more (or no entry): nothing is due
            if current == at:
                if key not in taken:
                    taken.add(key)
                    due.append((key, at))
            elif current > at:
                heapq.heappush(heap, (current, key))  # moved later since: index it there
            # current < at: an earlier item covers the key (or it is taken)
        return due

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None


class PartitionState:
    """The entries of one partition with timer and expiry indexes."""

    __slots__ = ("_entries", "_expiries", "_timers", "partition")

    def __init__(
        self, partition: int, entries: dict[bytes, StateEntry | Stored] | None = None
    ) -> None:
        """`entries` (a restore's) is taken over; parsed ones are stored as their bytes."""
        self.partition = partition
        self._entries: dict[bytes, Stored] = {}
        if entries:
            for key, entry in entries.items():
                if isinstance(entry, StateEntry):
                    entries[key] = _stored(entry)
            self._entries = cast(dict[bytes, Stored], entries)
        self._timers = _TimeIndex(1, self._entries)
        self._expiries = _TimeIndex(2, self._entries)

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
        entries = self._entries
        old = entries.get(key)
        entries[key] = _stored(entry, encoded)
        self._timers.written(key, old, entry.wake_at)
        self._expiries.written(key, old, entry.expires_at)

    def delete(self, key: bytes) -> None:
        """Apply an acknowledged tombstone."""
        self._entries.pop(key, None)
        self._timers.deleted(key)
        self._expiries.deleted(key)

    def due_timers(self, now: float, limit: int) -> list[tuple[bytes, float]]:
        """Up to `limit` keys whose current timer is due, as `(key, wake_at)`."""
        return self._timers.pop_due(self._entries, now, limit)

    def due_expiries(self, now: float, limit: int) -> list[tuple[bytes, float]]:
        """Up to `limit` keys whose current entry expired, as `(key, expires_at)`."""
        return self._expiries.pop_due(self._entries, now, limit)

    def next_deadline(self) -> float | None:
        """The earliest indexed timer or expiry (possibly stale: waking early is harmless)."""
        times = (self._timers.next_time(), self._expiries.next_time())
        candidates = [t for t in times if t is not None]
        return min(candidates) if candidates else None
