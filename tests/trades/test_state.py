"""The per-trade state machine: never backwards, query is truth, mismatches flag the trade."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.pooul import QueryData
from schemas.signals import OrderCreatedSignal, ResolveSignal
from schemas.trade_state import TradeState
from worker.trades.reconcile import ReconcilePolicy
from worker.trades.state import (
    FLAG_REASONS,
    Phase,
    TradeRecord,
    apply_answer,
    apply_order_created,
    apply_resolve,
    can_advance,
    classify_notify,
    new_notify_record,
    queried_as,
    recheck_refusal,
    reopen,
)

M = "888100000000001"
POLICY = ReconcilePolicy(
    delays=(10.0, 20.0),
    max_interval=100.0,
    jitter=0.0,
    close_grace=5.0,
    give_up_after=1000.0,
    default_ttl=500.0,
    retention=10_000.0,
)
NOW = 1_700_000_000.0


def answer(state: int, **fields: Any) -> QueryData:
    values: dict[str, Any] = {
        "merchant_id": M,
        "trade_id": "T1",
        "mch_trade_id": "ORDER-1",
        "trade_state": state,
        "total_fee": 100,
        **fields,
    }
    return QueryData.model_validate(values)


def owned(**fields: Any) -> TradeRecord:
    values: dict[str, Any] = {
        "trade_id": "T1",
        "merchant_id": M,
        "mch_trade_id": "ORDER-1",
        "expected_fee": 100,
        "expires_at": NOW + 300,
        "owned": True,
        "first_seen": NOW,
        "updated_at": NOW,
        **fields,
    }
    return TradeRecord(**values)


def order_signal(**fields: Any) -> OrderCreatedSignal:
    values: dict[str, Any] = {
        "trade_id": "T1",
        "merchant_id": M,
        "mch_trade_id": "ORDER-1",
        "total_fee": 100,
        "expires_at": datetime.fromtimestamp(NOW + 300, UTC),
        "created_at": datetime.fromtimestamp(NOW, UTC),
        **fields,
    }
    return OrderCreatedSignal(**values)


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (None, TradeState.PAID, True),
        (TradeState.NOT_PAID, TradeState.CLOSED, True),
        (TradeState.PAID, TradeState.REFUND_REQUESTED, True),
        (TradeState.PAID, TradeState.REVERSED, True),
        (TradeState.PAID, TradeState.CLOSED, False),
        (TradeState.PAID, TradeState.NOT_PAID, False),
        (TradeState.PAID, TradeState.FAILED, False),
        (TradeState.CLOSED, TradeState.PAID, False),
        (TradeState.REFUND_REQUESTED, TradeState.PAID, False),
        (TradeState.FAILED, TradeState.PAID, False),
    ],
)
def test_can_advance_only_forward(
    current: TradeState | None, new: TradeState, allowed: bool
) -> None:
    """Published states move only to what can follow them (paid → refund/reversal)."""
    assert can_advance(current, new) is allowed


def test_record_round_trips_through_json() -> None:
    """A record survives to_json/from_json unchanged (it is what the changelog stores)."""
    record = owned(
        phase=Phase.CONFIRMED,
        state=TradeState.PAID,
        published=TradeState.PAID,
        total_fee=100,
        checks=3,
        next_check_at=None,
        flag_reason=None,
        overdue=True,
    )
    assert TradeRecord.from_json(record.to_json()) == record
    resolved = owned(
        phase=Phase.RESOLVED, flag_reason="amount_mismatch", resolved_by="a", resolution="n"
    )
    assert TradeRecord.from_json(resolved.to_json()) == resolved


@pytest.mark.parametrize("value", [None, [], {"v": 99}, {"v": 1, "trade_id": "T"}])
def test_from_json_rejects_what_is_not_a_record(value: Any) -> None:
    """A foreign or truncated stored value is a ValueError, not a half-built record."""
    with pytest.raises(ValueError):
        TradeRecord.from_json(value)


def test_notify_classification() -> None:
    """Unknown/pending trades are queried; confirmed ones skip unless the claim moves them on."""
    assert classify_notify(None, TradeState.PAID) == "query"
    assert classify_notify(owned(), TradeState.PAID) == "query"
    paid = owned(phase=Phase.CONFIRMED, published=TradeState.PAID, state=TradeState.PAID)
    assert classify_notify(paid, TradeState.PAID) == "duplicate"
    assert classify_notify(paid, TradeState.CLOSED) == "duplicate"
    assert classify_notify(paid, None) == "duplicate"
    assert classify_notify(paid, TradeState.REFUND_REQUESTED) == "query"
    closed = owned(phase=Phase.CONFIRMED, published=TradeState.CLOSED)
    assert classify_notify(closed, TradeState.PAID) == "duplicate"
    assert classify_notify(owned(phase=Phase.FLAGGED), TradeState.PAID) == "flagged"


def test_paid_answer_publishes_and_confirms() -> None:
    """A paid answer with the right amount confirms the trade and stops reconciliation."""
    decision = apply_answer(owned(next_check_at=NOW + 10), answer(0), now=NOW, policy=POLICY)
    assert decision.kind == "publish"
    assert decision.record.phase is Phase.CONFIRMED
    assert decision.record.published is TradeState.PAID
    assert decision.record.next_check_at is None


def test_late_closed_or_unpaid_answer_after_paid_changes_nothing() -> None:
    """Once paid, a 'closed' or 'unpaid' answer is stale: no event, published state kept."""
    paid = apply_answer(owned(), answer(0), now=NOW, policy=POLICY).record
    for late in (3, 2, 7, 0):
        decision = apply_answer(paid, answer(late), now=NOW + 1, policy=POLICY)
        assert decision.kind == "stale"
        assert decision.record.published is TradeState.PAID
        assert decision.record.phase is Phase.CONFIRMED


def test_refund_requested_follows_paid() -> None:
    """paid → refund requested publishes the new fact."""
    paid = apply_answer(owned(), answer(0), now=NOW, policy=POLICY).record
    decision = apply_answer(paid, answer(1), now=NOW + 1, policy=POLICY)
    assert decision.kind == "publish"
    assert decision.record.published is TradeState.REFUND_REQUESTED


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"total_fee": 1}, "amount_mismatch"),
        ({"total_fee": None}, "amount_mismatch"),
        ({"merchant_id": "other"}, "merchant_mismatch"),
        ({"mch_trade_id": "ORDER-2"}, "mch_trade_id_mismatch"),
        ({"trade_id": "T2"}, "trade_id_mismatch"),
        ({"fee_type": "USD"}, "currency_mismatch"),
        ({"fee_type": "CNY", "currency_type": "HKD"}, "currency_mismatch"),
    ],
)
def test_contradicting_answer_flags_and_publishes_nothing(
    fields: dict[str, Any], reason: str
) -> None:
    """An answer that contradicts the order flags the trade with the reason; no event."""
    decision = apply_answer(owned(), answer(0, **fields), now=NOW, policy=POLICY)
    assert decision.kind == "flag"
    assert decision.reason == reason
    assert reason in FLAG_REASONS  # its metric child exists from the start
    assert decision.detail
    assert decision.record.phase is Phase.FLAGGED
    assert decision.record.published is None
    assert decision.record.next_check_at is None


def test_unowned_trade_publishes_unchecked_amount_but_needs_one() -> None:
    """Without an order-created signal any amount is published; a paid answer without one is not."""
    record = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW, policy=POLICY
    )
    assert apply_answer(record, answer(0, total_fee=77), now=NOW, policy=POLICY).kind == "publish"
    missing = apply_answer(record, answer(0, total_fee=None), now=NOW, policy=POLICY)
    assert (missing.kind, missing.reason) == ("flag", "amount_missing")


def test_unowned_trade_takes_the_answers_mch_trade_id() -> None:
    """For a notify-only trade the query's mch_trade_id wins over the notify's claim."""
    record = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="CLAIMED", now=NOW, policy=POLICY
    )
    decision = apply_answer(record, answer(0, mch_trade_id="REAL"), now=NOW, policy=POLICY)
    assert decision.kind == "publish"
    assert decision.record.mch_trade_id == "REAL"


def test_not_final_answer_reschedules_on_the_backoff() -> None:
    """An unpaid answer schedules the next check; reconciliation checks advance the schedule."""
    first = apply_answer(owned(), answer(2), now=NOW, policy=POLICY, counts_as_check=True)
    assert first.kind == "recheck"
    assert first.record.checks == 1
    assert first.record.next_check_at == NOW + 20.0
    notify = apply_answer(owned(), answer(6), now=NOW, policy=POLICY)
    assert (notify.kind, notify.record.checks, notify.record.next_check_at) == (
        "recheck",
        0,
        NOW + 10.0,
    )


def test_expired_owned_unpaid_trade_is_closed_then_rechecked() -> None:
    """After expiry + grace an owned unpaid trade gets a close; still open after it → recheck."""
    record = owned(expires_at=NOW - 10)
    decision = apply_answer(record, answer(2), now=NOW, policy=POLICY, counts_as_check=True)
    assert decision.kind == "close"
    after = apply_answer(decision.record, answer(2), now=NOW, policy=POLICY, after_close=True)
    assert after.kind == "recheck"
    assert after.record.close_attempts == 1
    closed = apply_answer(decision.record, answer(3), now=NOW, policy=POLICY, after_close=True)
    assert closed.kind == "publish"
    assert closed.record.published is TradeState.CLOSED


def test_the_order_currency_in_any_case_or_none_at_all_is_accepted() -> None:
    for fields in ({"fee_type": "CNY"}, {"currency_type": "cny"}, {}):
        assert apply_answer(owned(), answer(0, **fields), now=NOW, policy=POLICY).kind == "publish"


def test_an_expired_trade_is_closed_even_while_the_buyer_is_paying() -> None:
    """State 6 (paying) past expiry + grace is closed like state 2: the expiry is the merchant's
    decision, and the platform arbitrates a race (a paid order refuses the close, and the query
    that follows publishes succeeded)."""
    record = owned(expires_at=NOW - 10)
    paying = apply_answer(record, answer(6), now=NOW, policy=POLICY, counts_as_check=True)
    assert paying.kind == "close"
    paid = apply_answer(paying.record, answer(0), now=NOW, policy=POLICY, after_close=True)
    assert (paid.kind, paid.record.published) == ("publish", TradeState.PAID)


def test_a_given_up_trade_is_given_up_once() -> None:
    """A late notify's not-final answer about an abandoned trade records it without a second
    dead letter; a final one is still published."""
    abandoned = apply_answer(owned(expires_at=NOW - 2000), answer(2), now=NOW, policy=POLICY)
    assert abandoned.kind == "abandon"
    again = apply_answer(abandoned.record, answer(2), now=NOW + 60, policy=POLICY)
    assert again.kind == "update"
    assert again.record.phase is Phase.ABANDONED
    assert again.record.next_check_at is None
    paid = apply_answer(abandoned.record, answer(0), now=NOW + 60, policy=POLICY)
    assert (paid.kind, paid.record.published) == ("publish", TradeState.PAID)


def test_expired_trade_not_closed_is_queried_until_give_up() -> None:
    """With closing off (or for unowned trades) expiry alone changes nothing until give-up."""
    policy = ReconcilePolicy(
        delays=(10.0,), jitter=0.0, close_grace=5.0, give_up_after=100.0, close_expired=False
    )
    record = owned(expires_at=NOW - 10)
    assert apply_answer(record, answer(2), now=NOW, policy=policy).kind == "recheck"
    late = apply_answer(record, answer(2), now=NOW + 200, policy=policy)
    assert (late.kind, late.reason) == ("abandon", "unconfirmed_expired")
    assert late.record.phase is Phase.ABANDONED
    unowned = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW - 600, policy=POLICY
    )
    assert apply_answer(unowned, answer(2), now=NOW, policy=POLICY).kind == "recheck"


def test_order_created_records_pending_and_schedules_first_check() -> None:
    """A first order-created signal records the expectations and the first check time."""
    decision = apply_order_created(None, order_signal(), now=NOW, policy=POLICY)
    assert decision.kind == "update"
    record = decision.record
    assert (record.owned, record.expected_fee, record.mch_trade_id) == (True, 100, "ORDER-1")
    assert record.expires_at == NOW + 300
    assert record.next_check_at == NOW + 10.0
    assert (
        apply_order_created(record, order_signal(), now=NOW + 1, policy=POLICY).kind == "duplicate"
    )


def test_order_created_after_notify_keeps_the_earlier_check() -> None:
    """A notify-first pending trade adopts the order's facts and keeps a sooner check."""
    pending = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW, policy=POLICY
    )
    pending = apply_answer(pending, answer(2), now=NOW, policy=POLICY).record
    decision = apply_order_created(pending, order_signal(), now=NOW + 5, policy=POLICY)
    assert decision.kind == "update"
    assert decision.record.owned and decision.record.expected_fee == 100
    assert decision.record.next_check_at == NOW + 10.0


def test_order_created_after_a_notify_of_another_merchant_takes_the_orders_identity() -> None:
    """Before the platform answered anything, merchant and mch_trade_id came from a notify
    alone (perhaps signed by another configured merchant): the order's replace them, nothing is
    flagged, and the trade is queried as the order's merchant. Once the platform answered, the
    same difference is a contradiction."""
    notified = new_notify_record(
        trade_id="T1", merchant_id="999", mch_trade_id="CLAIMED", now=NOW, policy=POLICY
    )
    notified = replace(notified, next_check_at=NOW + 10)
    decision = apply_order_created(notified, order_signal(), now=NOW, policy=POLICY)
    assert decision.kind == "update"
    record = decision.record
    assert (record.merchant_id, record.mch_trade_id, record.phase) == (M, "ORDER-1", Phase.PENDING)
    answered = replace(notified, state=TradeState.NOT_PAID)
    flagged = apply_order_created(answered, order_signal(), now=NOW, policy=POLICY)
    assert (flagged.kind, flagged.reason) == ("flag", "merchant_mismatch")
    assert flagged.record.merchant_id == "999"
    # A second order naming another merchant contradicts the first: flagged, not adopted.
    ordered = apply_order_created(None, order_signal(), now=NOW, policy=POLICY).record
    other = apply_order_created(ordered, order_signal(merchant_id="999"), now=NOW, policy=POLICY)
    assert (other.kind, other.reason, other.record.merchant_id) == ("flag", "merchant_mismatch", M)


def test_a_notify_of_another_merchant_requeries_only_a_trade_nothing_vouched_for() -> None:
    """Named by notifies alone, a trade is queried as the merchant of the notify at hand; once
    an order, a verified answer or an event vouched for its merchant, it stays that one."""
    notified = new_notify_record(
        trade_id="T1", merchant_id="999", mch_trade_id="CLAIMED", now=NOW, policy=POLICY
    )
    taken = queried_as(notified, merchant_id=M, mch_trade_id="ORDER-1", now=NOW + 1)
    assert (taken.merchant_id, taken.mch_trade_id, taken.updated_at) == (M, "ORDER-1", NOW + 1)
    assert queried_as(notified, merchant_id="999", mch_trade_id="X", now=NOW + 1) is notified
    vouched = [
        replace(notified, state=TradeState.NOT_PAID),
        replace(notified, owned=True),
        replace(notified, published=TradeState.PAID),
        replace(notified, phase=Phase.FLAGGED),
    ]
    for record in vouched:
        assert queried_as(record, merchant_id=M, mch_trade_id="ORDER-1", now=NOW) is record


def test_order_created_after_a_published_wrong_amount_flags_the_trade() -> None:
    """A confirmed trade whose published amount differs from the late order is flagged."""
    record = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW, policy=POLICY
    )
    paid = apply_answer(record, answer(0, total_fee=90), now=NOW, policy=POLICY).record
    decision = apply_order_created(paid, order_signal(), now=NOW + 1, policy=POLICY)
    assert (decision.kind, decision.reason) == ("flag", "amount_mismatch")
    assert decision.record.published is TradeState.PAID
    assert decision.record.phase is Phase.FLAGGED
    same = apply_answer(record, answer(0), now=NOW, policy=POLICY).record
    assert apply_order_created(same, order_signal(), now=NOW + 1, policy=POLICY).kind == "update"


def test_entries_are_kept_for_the_retention_after_the_last_change_expiry_or_check() -> None:
    """The dedup memory outlives the trade's last change, its expiry and its next check."""
    policy = ReconcilePolicy(retention=7 * 86400.0)
    record = owned(updated_at=NOW, expires_at=NOW + 300, next_check_at=NOW + 900)
    assert record.keep_until(policy) == NOW + 900 + 7 * 86400.0
    confirmed = owned(updated_at=NOW + 5000, expires_at=NOW + 300, next_check_at=None)
    assert confirmed.keep_until(policy) == NOW + 5000 + 7 * 86400.0


def test_a_flagged_trade_is_kept_until_a_human_acts() -> None:
    """Without its entry a later signal or a replayed dead letter would start afresh, without
    the order's amount, and could publish what the flag forbids."""
    flagged = apply_answer(owned(), answer(0, total_fee=1), now=NOW, policy=POLICY).record
    assert flagged.phase is Phase.FLAGGED
    assert flagged.keep_until(ReconcilePolicy(retention=60.0)) is None


def test_repeated_order_created_signal_with_other_times_is_a_duplicate() -> None:
    """A second signal for the same order (the orders worker crashed between its signal and its
    state, then recovered the order after a 107) is skipped whatever its created_at/expires_at,
    before and after the trade was paid; the first expiry and schedule are kept."""
    first = apply_order_created(None, order_signal(), now=NOW, policy=POLICY).record
    again = order_signal(
        created_at=datetime.fromtimestamp(NOW + 40, UTC),
        expires_at=datetime.fromtimestamp(NOW + 7240, UTC),
    )
    repeat = apply_order_created(first, again, now=NOW + 40, policy=POLICY)
    assert (repeat.kind, repeat.record) == ("duplicate", first)
    paid = apply_answer(first, answer(0), now=NOW + 50, policy=POLICY).record
    late = apply_order_created(paid, again, now=NOW + 60, policy=POLICY)
    assert (late.kind, late.record) == ("duplicate", paid)
    assert late.record.published is TradeState.PAID


def test_order_created_for_an_abandoned_trade_schedules_it_again() -> None:
    """A trade given up on (notify-only, expired) is checked again once its order turns up."""
    record = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW - 2000, policy=POLICY
    )
    abandoned = apply_answer(record, answer(2), now=NOW, policy=POLICY)
    assert (abandoned.kind, abandoned.record.phase) == ("abandon", Phase.ABANDONED)
    decision = apply_order_created(abandoned.record, order_signal(), now=NOW, policy=POLICY)
    assert decision.kind == "update"
    assert (decision.record.phase, decision.record.owned) == (Phase.PENDING, True)
    assert decision.record.next_check_at == NOW + 10.0


@pytest.mark.parametrize("state", [3, 7])
def test_unowned_final_answer_without_any_amount_flags_instead_of_failing(state: int) -> None:
    """A closed/failed answer without total_fee for a trade with no order amount is flagged
    `amount_missing` (an event needs an amount); with the order's amount it is published."""
    record = new_notify_record(
        trade_id="T1", merchant_id=M, mch_trade_id="ORDER-1", now=NOW, policy=POLICY
    )
    decision = apply_answer(record, answer(state, total_fee=None), now=NOW, policy=POLICY)
    assert (decision.kind, decision.reason) == ("flag", "amount_missing")
    owned_decision = apply_answer(owned(), answer(state, total_fee=None), now=NOW, policy=POLICY)
    assert owned_decision.kind == "publish"


def resolve_signal(**fields: Any) -> ResolveSignal:
    values: dict[str, Any] = {
        "trade_id": "T1",
        "requested_by": "alice",
        "requested_at": datetime.fromtimestamp(NOW, UTC),
        "note": "refunded offline, ticket 42",
        **fields,
    }
    return ResolveSignal(**values)


def test_resolving_a_flagged_trade_keeps_it_for_good_and_publishes_nothing() -> None:
    """A flagged trade a human settled becomes resolved: kept, later notifies and order signals
    change nothing, never reconciled."""
    flagged = apply_answer(owned(), answer(0, total_fee=1), now=NOW, policy=POLICY).record
    decision = apply_resolve(flagged, resolve_signal(), now=NOW + 60)
    assert decision.kind == "update"
    resolved = decision.record
    assert resolved.phase is Phase.RESOLVED
    assert (resolved.resolved_by, resolved.resolution) == ("alice", "refunded offline, ticket 42")
    assert resolved.operator_action == "resolve by alice at 2023-11-14T22:13:20+00:00"
    assert (resolved.flag_reason, resolved.published, resolved.updated_at) == (
        "amount_mismatch",
        None,
        NOW + 60,
    )
    assert resolved.keep_until(ReconcilePolicy(retention=60.0)) is None
    assert classify_notify(resolved, TradeState.PAID) == "duplicate"
    late_order = apply_order_created(resolved, order_signal(total_fee=1), now=NOW, policy=POLICY)
    assert late_order.kind == "update" and late_order.record.phase is Phase.RESOLVED


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.CONFIRMED, Phase.ABANDONED, Phase.RESOLVED])
def test_resolve_leaves_a_trade_not_flagged_as_it_is(phase: Phase) -> None:
    record = owned(phase=phase)
    decision = apply_resolve(record, resolve_signal(), now=NOW)
    assert (decision.kind, decision.reason, decision.record) == ("duplicate", "not_flagged", record)
    assert phase.value in decision.detail


def test_a_reopened_flagged_trade_is_judged_by_the_usual_rules() -> None:
    """A recheck reopens a flagged trade: still contradicting → flagged again; an answer that
    agrees with the order → published. What the order expects is kept; the entry names the
    recheck."""
    flagged = apply_answer(owned(), answer(0, total_fee=1), now=NOW, policy=POLICY).record
    assert recheck_refusal(flagged) is None
    reopened = reopen(flagged, now=NOW + 10, stamp="recheck by a at t")
    assert (reopened.phase, reopened.flag_reason, reopened.expected_fee) == (
        Phase.PENDING,
        None,
        100,
    )
    again = apply_answer(reopened, answer(0, total_fee=1), now=NOW + 10, policy=POLICY)
    assert (again.kind, again.reason) == ("flag", "amount_mismatch")
    assert again.record.operator_action == "recheck by a at t"
    agrees = apply_answer(reopened, answer(0), now=NOW + 10, policy=POLICY)
    assert agrees.kind == "publish" and agrees.record.published is TradeState.PAID


def test_reopen_keeps_what_was_published() -> None:
    """A trade flagged after its event (a late order with another amount) reopens as confirmed:
    the published state stays the anchor; an agreeing answer is then stale (nothing again)."""
    record = owned(phase=Phase.FLAGGED, published=TradeState.PAID, flag_reason="amount_mismatch")
    reopened = reopen(record, now=NOW, stamp="s")
    assert (reopened.phase, reopened.published, reopened.flag_reason) == (
        Phase.CONFIRMED,
        TradeState.PAID,
        None,
    )
    assert apply_answer(reopened, answer(0), now=NOW, policy=POLICY).kind == "stale"
    assert reopen(owned(phase=Phase.ABANDONED), now=NOW, stamp="s").phase is Phase.PENDING


def test_a_recheck_cannot_undo_a_resolution_or_settle_a_merchant_contradiction() -> None:
    """Resolved trades (maybe refunded by hand) and merchant contradictions are refused: the
    stored merchant is the one queried as, so the answer would agree with it and publish."""
    assert recheck_refusal(owned(phase=Phase.RESOLVED)) == "resolved"
    notified = owned(phase=Phase.CONFIRMED, published=TradeState.PAID, total_fee=100)
    late = apply_order_created(notified, order_signal(merchant_id="999"), now=NOW, policy=POLICY)
    assert (late.kind, late.record.flag_reason) == ("flag", "merchant_mismatch")
    assert recheck_refusal(late.record) == "merchant_contradiction"
    assert recheck_refusal(owned(phase=Phase.ABANDONED)) is None
