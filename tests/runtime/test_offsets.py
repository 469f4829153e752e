"""Offset tracking: the committable offset never passes an unfinished record."""

from __future__ import annotations

import random

import pytest

from worker.runtime.offsets import OffsetTracker


def test_committable_stops_at_lowest_unfinished() -> None:
    """Later records finishing first do not move the committable offset past an earlier one."""
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.add(offset)
    assert tracker.committable == 5
    tracker.finish(7)
    tracker.finish(6)
    assert tracker.committable == 5
    tracker.finish(5)
    assert tracker.committable == 8
    assert tracker.unfinished == 0


def test_nothing_admitted_has_nothing_to_commit() -> None:
    """A fresh tracker has no opinion on what to commit."""
    assert OffsetTracker().committable is None


def test_gaps_in_offsets_are_skipped() -> None:
    """Offsets need not be contiguous (compacted topics, control records)."""
    tracker = OffsetTracker()
    for offset in (3, 10, 11):
        tracker.add(offset)
    tracker.finish(3)
    assert tracker.committable == 10
    tracker.finish(11)
    tracker.finish(10)
    assert tracker.committable == 12


def test_random_finish_order_matches_a_naive_model() -> None:
    """Under any finish order the committable offset equals min(unfinished) or last + 1."""
    rng = random.Random(7)
    tracker = OffsetTracker()
    offsets = list(range(100, 400))
    for offset in offsets:
        tracker.add(offset)
    unfinished = set(offsets)
    order = offsets[:]
    rng.shuffle(order)
    for offset in order:
        tracker.finish(offset)
        unfinished.discard(offset)
        expected = min(unfinished) if unfinished else 400
        assert tracker.committable == expected
        assert tracker.unfinished == len(unfinished)


def test_misuse_is_refused() -> None:
    """Going backwards, finishing twice or finishing the unknown raise instead of corrupting."""
    tracker = OffsetTracker()
    tracker.add(1)
    tracker.add(2)
    with pytest.raises(ValueError):
        tracker.add(2)
    tracker.finish(2)
    with pytest.raises(ValueError):
        tracker.finish(2)
    with pytest.raises(ValueError):
        tracker.finish(9)


def test_oldest_unfinished_age_uses_admission_time() -> None:
    """The age is that of the lowest unfinished record, zero when all finished."""
    now = [100.0]
    tracker = OffsetTracker(clock=lambda: now[0])
    tracker.add(1)
    now[0] = 103.0
    tracker.add(2)
    now[0] = 110.0
    assert tracker.oldest_unfinished_age() == pytest.approx(10.0)
    tracker.finish(1)
    assert tracker.oldest_unfinished_age() == pytest.approx(7.0)
    tracker.finish(2)
    assert tracker.oldest_unfinished_age() == 0.0
