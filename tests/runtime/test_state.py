"""The in-memory side of keyed state: envelope encoding, timers and expiry indexes."""

from __future__ import annotations

import pytest

from worker.runtime.state import (
    PartitionState,
    StateEntry,
    decode_entry,
    encode_entry,
    restored_entry,
)


def test_envelope_round_trip() -> None:
    """A state entry survives encode → decode unchanged."""
    entry = StateEntry(
        {"phase": "pending", "fee": 1}, wake_at=1700000000.5, expires_at=1800000000.0
    )
    assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"value": 1}', b'{"v": 1, "wake_at": "soon"}'],
)
def test_decode_rejects_what_encode_cannot_produce(raw: bytes) -> None:
    """Corrupt changelog values raise ValueError instead of restoring garbage."""
    with pytest.raises(ValueError):
        decode_entry(raw)


def test_encode_refuses_non_json_values() -> None:
    """A value that is not JSON-serialisable fails before anything is written."""
    with pytest.raises(TypeError):
        encode_entry(StateEntry({1, 2}))


def test_due_timers_skip_stale_index_items() -> None:
    """Only a key's current wake_at fires; superseded timers are dropped from the index."""
    state = PartitionState(0)
    state.put(b"a", StateEntry(1, wake_at=10.0))
    state.put(b"a", StateEntry(2, wake_at=30.0))  # moved later: the 10.0 item is stale
    state.put(b"b", StateEntry(3, wake_at=20.0))
    assert state.due_timers(25.0, limit=10) == [(b"b", 20.0)]
    assert state.due_timers(35.0, limit=10) == [(b"a", 30.0)]
    assert state.due_timers(100.0, limit=10) == []


def test_due_timers_respect_the_limit() -> None:
    """At most `limit` timers are popped; the rest stay indexed for the next round."""
    state = PartitionState(0)
    for i in range(5):
        state.put(b"k%d" % i, StateEntry(i, wake_at=float(i)))
    assert len(state.due_timers(10.0, limit=2)) == 2
    assert len(state.due_timers(10.0, limit=10)) == 3


def test_restored_entries_rebuild_the_indexes() -> None:
    """Timers and expiries of restored entries are found without any new put()."""
    state = PartitionState(
        1,
        {
            b"t": StateEntry("x", wake_at=5.0),
            b"e": StateEntry("y", expires_at=7.0),
            b"plain": StateEntry("z"),
        },
    )
    assert state.next_deadline() == 5.0
    assert state.due_timers(6.0, limit=10) == [(b"t", 5.0)]
    assert state.due_expiries(8.0, limit=10) == [(b"e", 7.0)]


def test_expired_entries_read_as_absent() -> None:
    """get() hides an entry past its expiry even before the tombstone is written."""
    state = PartitionState(0)
    state.put(b"k", StateEntry("v", expires_at=50.0))
    assert state.get(b"k", now=49.0) == StateEntry("v", expires_at=50.0)
    assert state.get(b"k", now=50.0) is None
    assert state.peek(b"k") is not None
    state.delete(b"k")
    assert state.peek(b"k") is None


@pytest.mark.parametrize(
    "entry",
    [
        StateEntry({"phase": "pending"}),
        StateEntry({"note": ',"wake_at":null,"expires_at":null}'}, wake_at=1700000000.25),
        StateEntry([1, 2], wake_at=None, expires_at=1800000000),
        StateEntry("s", wake_at=1e-3, expires_at=2e9),
        StateEntry(None),
    ],
)
def test_restored_entries_read_the_same_as_parsed_ones(entry: StateEntry) -> None:
    """Lazily restored entries (timer fields from the tail) equal a full parse, whatever the value holds."""
    raw = encode_entry(entry)
    restored = restored_entry(raw)
    assert (restored[1], restored[2]) == (entry.wake_at, entry.expires_at)
    assert restored[0] == raw  # kept unparsed
    state = PartitionState(0, {b"k": restored})
    assert state.peek(b"k") == entry == decode_entry(raw)


def test_other_layouts_are_parsed_in_full_and_corrupt_values_read_as_absent() -> None:
    """A pretty-printed envelope is parsed eagerly; a corrupt value behind a valid tail reads as absent."""
    pretty = b'{ "v": 1, "wake_at": 5.0, "expires_at": null }'
    assert restored_entry(pretty) == StateEntry(1, 5.0, None)
    broken = b'{"v":{oops,"wake_at":null,"expires_at":null}'
    state = PartitionState(0, {b"k": restored_entry(broken)})
    assert len(state) == 1
    assert state.get(b"k", now=0) is None
    assert len(state) == 0


def test_stored_entries_leave_the_garbage_collector_and_read_back_fresh() -> None:
    """An entry is kept as its changelog bytes: after one collection the collector no longer
    tracks it (a store of parsed values made every full collection walk every key), and each
    read parses a fresh value, so a caller changing what it read changes nothing stored."""
    import gc

    state = PartitionState(0)
    value = {"phase": "pending", "fee": 12, "bills": [{"amount": 12}]}
    state.put(b"k", StateEntry(value, wake_at=10.0, expires_at=20.0))
    gc.collect()
    assert not gc.is_tracked(state._entries[b"k"])

    read = state.peek(b"k")
    assert read == StateEntry(value, 10.0, 20.0)
    assert read is not None
    read.value["phase"] = "changed"
    assert state.get(b"k", now=0.0) == StateEntry(value, 10.0, 20.0)
    assert state.due_timers(now=15.0, limit=10) == [(b"k", 10.0)]


def test_indexes_hold_about_one_item_per_key_however_often_keys_are_written() -> None:
    """100 keys written 100 times each, their times moving later each time: about one index
    item per key (not 10,000), and only the current timers come due."""
    state = PartitionState(0)
    for round_ in range(100):
        for k in range(100):
            entry = StateEntry({"r": round_}, wake_at=1000.0 + round_, expires_at=9e9 + round_)
            state.put(b"k%d" % k, entry)
    assert len(state._timers) == len(state._expiries) == 100
    assert state.due_timers(now=1050.0, limit=10_000) == []  # the old times are stale
    due = state.due_timers(now=2000.0, limit=10_000)
    assert sorted(due) == sorted((b"k%d" % k, 1099.0) for k in range(100))
    assert len(state._timers) == 0


def test_a_time_moved_earlier_later_cleared_or_deleted_comes_due_exactly_then() -> None:
    """Every way a key's time changes gives exactly one firing at the current time."""
    state = PartitionState(0)
    state.put(b"later", StateEntry({}, wake_at=10.0))
    state.put(b"later", StateEntry({}, wake_at=30.0))
    state.put(b"earlier", StateEntry({}, wake_at=30.0))
    state.put(b"earlier", StateEntry({}, wake_at=10.0))
    state.put(b"cleared", StateEntry({}, wake_at=10.0))
    state.put(b"cleared", StateEntry({}, wake_at=None))
    state.put(b"gone", StateEntry({}, wake_at=10.0))
    state.delete(b"gone")
    state.put(b"back", StateEntry({}, wake_at=10.0))
    state.delete(b"back")
    state.put(b"back", StateEntry({}, wake_at=20.0))
    assert state.due_timers(now=15.0, limit=100) == [(b"earlier", 10.0)]
    assert state.due_timers(now=25.0, limit=100) == [(b"back", 20.0)]
    assert state.due_timers(now=35.0, limit=100) == [(b"later", 30.0)]
    assert state.due_timers(now=1e9, limit=100) == []


def test_a_key_handed_out_is_not_handed_out_again_until_written() -> None:
    """A due timer taken (queued, not yet run) is not handed out a second time by a duplicate
    index item; once its handler writes a new time, that time comes due."""
    state = PartitionState(0)
    state.put(b"k", StateEntry({}, wake_at=10.0))
    state.put(b"k", StateEntry({"again": 1}, wake_at=None))
    state.put(b"k", StateEntry({"again": 2}, wake_at=10.0))  # an item at 10 twice now
    assert state.due_timers(now=10.0, limit=10) == [(b"k", 10.0)]
    assert state.due_timers(now=10.0, limit=10) == []
    state.put(b"k", StateEntry({"next": 1}, wake_at=12.0))  # the handler's write
    assert state.due_timers(now=12.0, limit=10) == [(b"k", 12.0)]
    assert state.next_deadline() is None
