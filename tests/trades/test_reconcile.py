"""The reconciliation schedule: parsing, backoff, expiry-aware next checks."""

from __future__ import annotations

import pytest

from worker.settings import Settings
from worker.trades.reconcile import ReconcilePolicy, parse_schedule


def test_parse_schedule_reads_a_comma_list_of_seconds() -> None:
    """A comma list with spaces parses to positive floats in order."""
    assert parse_schedule("60, 120,300") == (60.0, 120.0, 300.0)
    assert parse_schedule("0.05") == (0.05,)


@pytest.mark.parametrize("text", ["", " , ", "60,abc", "60,0", "-1"])
def test_parse_schedule_rejects_empty_non_numeric_and_non_positive(text: str) -> None:
    """Anything but positive numbers is refused with a ValueError naming the problem."""
    with pytest.raises(ValueError, match="reconcile schedule"):
        parse_schedule(text)


def test_settings_refuse_a_bad_schedule_and_build_a_policy() -> None:
    """POOUL_RECONCILE_SCHEDULE is validated when settings load, and the policy follows it."""
    with pytest.raises(ValueError, match="reconcile schedule"):
        Settings(pooul_reconcile_schedule="1,x")
    policy = ReconcilePolicy.from_settings(
        Settings(
            pooul_reconcile_schedule="1,2", pooul_reconcile_interval_max=9, pooul_reconcile_jitter=0
        )
    )
    assert policy.delays == (1.0, 2.0)
    assert [policy.delay(trade_id="T", checks=n) for n in range(4)] == [1.0, 2.0, 9.0, 9.0]


def test_default_schedule_is_1_2_5_10_30_minutes_then_hourly() -> None:
    """Without jitter the defaults are the issue's schedule."""
    policy = ReconcilePolicy.from_settings(Settings(pooul_reconcile_jitter=0))
    delays = [policy.delay(trade_id="T", checks=n) for n in range(7)]
    assert delays == [60, 120, 300, 600, 1800, 3600, 3600]


def test_jitter_is_bounded_stable_per_trade_and_varies_between_trades() -> None:
    """Jitter stays within ±10 %, replays identically, and differs across trades."""
    policy = ReconcilePolicy(delays=(100.0,), jitter=0.1)
    delays = {policy.delay(trade_id=f"T{i}", checks=0) for i in range(50)}
    assert all(90.0 <= d <= 110.0 for d in delays)
    assert len(delays) > 40
    assert policy.delay(trade_id="T7", checks=0) == policy.delay(trade_id="T7", checks=0)


def test_next_check_never_passes_the_moment_the_trade_may_close() -> None:
    """A trade expiring before its next scheduled check is checked right at expiry + grace."""
    policy = ReconcilePolicy(delays=(600.0,), jitter=0.0, close_grace=5.0)
    assert policy.next_check_at(trade_id="T", checks=0, now=1000.0, expires_at=1100.0) == 1105.0
    assert policy.next_check_at(trade_id="T", checks=0, now=1000.0, expires_at=None) == 1600.0
    # Already past the close moment: the schedule applies again (no busy loop at expiry).
    assert policy.next_check_at(trade_id="T", checks=0, now=1200.0, expires_at=1100.0) == 1800.0
