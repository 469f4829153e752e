"""The benchmarks' harness: what keeps the load generator from measuring itself."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.bench.harness import collector_paused


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()
    gc.unfreeze()


def test_the_collector_is_off_while_timing_and_on_again_after(collector_on: None) -> None:
    with collector_paused():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # startup objects frozen first
    assert gc.isenabled()


def test_nested_phases_leave_it_off_until_the_outer_one_ends(collector_on: None) -> None:
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_in_the_phase_still_turns_it_back_on(collector_on: None) -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("phase failed")
    assert gc.isenabled()
