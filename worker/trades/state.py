"""The per-trade state machine: pure functions from (what we knew, what we learnt) to a decision.

No I/O here. The handler feeds in signals and signature-verified query answers and carries out
the returned `Decision` (publish, flag, close, recheck), then writes `decision.record`.

Rules:
- A trade's published state never goes backwards: once paid, a later "closed"/"unpaid" answer
  or a late duplicate changes nothing. The only moves out of a published state are the ones
  that can follow a payment: paid → refund requested / reversed / revoked.
- Only the query's answer moves a trade; a notify only decides whether to ask.
- An answer that contradicts the order (amount, merchant, mch_trade_id) flags the trade:
  nothing is published for it, ever, without a human. What a human can do (`pooul-worker trade
  recheck|resolve`): have it queried again under these same rules (`reopen`), or mark it
  settled outside the service (`apply_resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Literal

from schemas.events import PUBLISHED_STATES
from schemas.pooul import QueryData
from schemas.signals import OperatorSignal, OrderCreatedSignal, ResolveSignal
from schemas.trade_state import TradeState
from worker.trades.reconcile import ReconcilePolicy

__all__ = [
    "FLAG_REASONS",
    "MONEY_STATES",
    "Decision",
    "NotifyVerdict",
    "Phase",
    "TradeRecord",
    "action_stamp",
    "apply_answer",
    "apply_order_created",
    "apply_resolve",
    "can_advance",
    "classify_notify",
    "identity_mismatch",
    "new_notify_record",
    "queried_as",
    "recheck_refusal",
    "reopen",
    "unvouched",
]

_STATE_VERSION: Final = 1

# States that follow a payment (paid, and what can come after it): their amount must be known
# and right.
MONEY_STATES: Final = frozenset(
    {TradeState.PAID, TradeState.REFUND_REQUESTED, TradeState.REVERSED, TradeState.REVOKED}
)
# Why a trade can be flagged (the `reason` of its dead letter and of
# pooul_trades_mismatches_total, whose children are created up front so alerts see the first).
FLAG_REASONS: Final = (
    "amount_mismatch",
    "amount_missing",
    "currency_mismatch",
    "mch_trade_id_mismatch",
    "mch_trade_id_missing",
    "merchant_mismatch",
    "trade_id_mismatch",
)
# What may follow a published state. Everything else that is final is terminal.
_FOLLOWERS: Final[dict[TradeState, frozenset[TradeState]]] = {
    TradeState.PAID: frozenset(
        {TradeState.REFUND_REQUESTED, TradeState.REVERSED, TradeState.REVOKED}
    ),
}


class Phase(StrEnum):
    """Where a trade is in its life in this service."""

    PENDING = "pending"  # no final state confirmed yet: reconciliation is scheduled
    CONFIRMED = "confirmed"  # a final state was confirmed by query and published
    FLAGGED = "flagged"  # the platform contradicts the order: nothing published, needs a human
    ABANDONED = "abandoned"  # expired, never confirmed final, no longer queried
    RESOLVED = "resolved"  # was flagged; a human settled it outside the service (nothing published)


# Phases whose entry is kept until a human acts, and then for good: without it a later signal
# or a dead letter's replay would start afresh, without the order's amount to check against.
_KEPT_FOR_GOOD: Final = frozenset({Phase.FLAGGED, Phase.RESOLVED})


def can_advance(current: TradeState | None, new: TradeState) -> bool:
    """True when a trade whose published state is `current` may move to `new`."""
    if current is None or not current.is_final:
        return True
    return new in _FOLLOWERS.get(current, frozenset())


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeRecord:
    """What the worker remembers about one trade (stored as JSON in the changelog store).

    - `owned`: an order-created signal was seen, so the expected amount, mch_trade_id and
      expiry come from the order and the trade may be closed by this service.
    - `state`: the last trade_state a verified query answered (final or not).
    - `published`: the last state published as an event; the "never backwards" anchor.
    - `checks`: queries done by reconciliation (the index into the backoff schedule).
    """

    trade_id: str
    merchant_id: str
    first_seen: float
    updated_at: float
    mch_trade_id: str | None = None
    expected_fee: int | None = None
    expires_at: float | None = None
    owned: bool = False
    phase: Phase = Phase.PENDING
    state: TradeState | None = None
    published: TradeState | None = None
    total_fee: int | None = None
    checks: int = 0
    next_check_at: float | None = None
    close_attempts: int = 0
    flag_reason: str | None = None
    overdue: bool = False
    resolved_by: str | None = None
    resolution: str | None = None
    operator_action: str | None = None  # the last operator signal acted on (`action_stamp`)

    def to_json(self) -> dict[str, Any]:
        """The stored form (versioned, so a later layout can still read this one)."""
        return {
            "v": _STATE_VERSION,
            "trade_id": self.trade_id,
            "merchant_id": self.merchant_id,
            "first_seen": self.first_seen,
            "updated_at": self.updated_at,
            "mch_trade_id": self.mch_trade_id,
            "expected_fee": self.expected_fee,
            "expires_at": self.expires_at,
            "owned": self.owned,
            "phase": self.phase.value,
            "state": None if self.state is None else int(self.state),
            "published": None if self.published is None else int(self.published),
            "total_fee": self.total_fee,
            "checks": self.checks,
            "next_check_at": self.next_check_at,
            "close_attempts": self.close_attempts,
            "flag_reason": self.flag_reason,
            "overdue": self.overdue,
            "resolved_by": self.resolved_by,
            "resolution": self.resolution,
            "operator_action": self.operator_action,
        }

    @classmethod
    def from_json(cls, value: Any) -> TradeRecord:
        """Rebuild a stored record; raises `ValueError` on anything that is not one."""
        if not isinstance(value, dict) or value.get("v") != _STATE_VERSION:
            raise ValueError(f"not a version-{_STATE_VERSION} trade record: {value!r:.200}")
        try:
            state, published = value.get("state"), value.get("published")
            return cls(
                trade_id=str(value["trade_id"]),
                merchant_id=str(value["merchant_id"]),
                first_seen=float(value["first_seen"]),
                updated_at=float(value["updated_at"]),
                mch_trade_id=value.get("mch_trade_id"),
                expected_fee=value.get("expected_fee"),
                expires_at=value.get("expires_at"),
                owned=bool(value.get("owned", False)),
                phase=Phase(value.get("phase", Phase.PENDING)),
                state=None if state is None else TradeState(state),
                published=None if published is None else TradeState(published),
                total_fee=value.get("total_fee"),
                checks=int(value.get("checks", 0)),
                next_check_at=value.get("next_check_at"),
                close_attempts=int(value.get("close_attempts", 0)),
                flag_reason=value.get("flag_reason"),
                overdue=bool(value.get("overdue", False)),
                resolved_by=value.get("resolved_by"),
                resolution=value.get("resolution"),
                operator_action=value.get("operator_action"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed trade record: {exc}") from None

    def keep_until(self, policy: ReconcilePolicy) -> float | None:
        """When the entry (and the dedup memory it is) may be dropped from the store; None for
        a flagged or resolved trade (`_KEPT_FOR_GOOD`)."""
        if self.phase in _KEPT_FOR_GOOD:
            return None
        horizon = max(self.updated_at, self.expires_at or 0.0, self.next_check_at or 0.0)
        return horizon + policy.retention


DecisionKind = Literal[
    "publish", "flag", "recheck", "close", "stale", "abandon", "update", "duplicate"
]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, and the record to write once it is done.

    - `publish`: publish the event for `record.published`, then write.
    - `flag`: send the evidence to dead letters with `reason`, then write (nothing published).
    - `recheck`: nothing to publish yet; write (it carries the next check time).
    - `close`: the trade expired unpaid: call the close API, query again, decide again.
    - `stale`: the answer is behind what was published (e.g. paid, then "closed"): ignore it.
    - `abandon`: expired and nobody closes it: dead-letter `reason`, stop querying, write.
    - `update`: new facts (an order-created signal, or a not-final answer about a trade given
      up already); write (it may carry a check time).
    - `duplicate`: nothing new (an order-created signal seen before): write nothing.
    """

    kind: DecisionKind
    record: TradeRecord
    reason: str = ""
    detail: str = ""


NotifyVerdict = Literal["query", "duplicate", "flagged"]


def classify_notify(record: TradeRecord | None, claimed: TradeState | None) -> NotifyVerdict:
    """Whether a notify is worth a query. Only a claim that could move the trade forward is;
    nothing a notify says moves a trade a human settled (resolved)."""
    if record is None:
        return "query"
    if record.phase is Phase.FLAGGED:
        return "flagged"
    if record.phase is Phase.RESOLVED:
        return "duplicate"
    if record.phase is Phase.CONFIRMED:
        if (
            claimed is not None
            and claimed != record.published
            and can_advance(record.published, claimed)
        ):
            return "query"
        return "duplicate"
    return "query"


def new_notify_record(
    *,
    trade_id: str,
    merchant_id: str,
    mch_trade_id: str | None,
    now: float,
    policy: ReconcilePolicy,
) -> TradeRecord:
    """A trade first seen through a notify (created outside this service): expiry by default."""
    return TradeRecord(
        trade_id=trade_id,
        merchant_id=merchant_id,
        mch_trade_id=mch_trade_id,
        first_seen=now,
        updated_at=now,
        expires_at=now + policy.default_ttl,
    )


def identity_mismatch(record: TradeRecord, answer: QueryData) -> tuple[str, str] | None:
    """(reason, detail) when the answer is not about the trade we ordered, else None."""
    if answer.trade_id != record.trade_id:
        return "trade_id_mismatch", f"queried {record.trade_id}, answer is {answer.trade_id}"
    if answer.merchant_id != record.merchant_id:
        return (
            "merchant_mismatch",
            f"expected merchant {record.merchant_id}, answer says {answer.merchant_id}",
        )
    if record.owned and answer.mch_trade_id and answer.mch_trade_id != record.mch_trade_id:
        return (
            "mch_trade_id_mismatch",
            f"expected mch_trade_id {record.mch_trade_id}, answer says {answer.mch_trade_id}",
        )
    if not (answer.mch_trade_id or record.mch_trade_id):
        return "mch_trade_id_missing", "neither the answer nor the signals name the mch_trade_id"
    if record.expected_fee is not None:
        foreign = [c for c in (answer.fee_type, answer.currency_type) if c and c.upper() != "CNY"]
        if foreign:
            # Orders are placed in fen of CNY (the unified order has no currency field).
            return "currency_mismatch", f"the order is in CNY, answer says {foreign[0]}"
        if answer.total_fee is None and answer.trade_state in MONEY_STATES:
            return "amount_mismatch", f"expected {record.expected_fee} fen, answer has no total_fee"
        if answer.total_fee is not None and answer.total_fee != record.expected_fee:
            return (
                "amount_mismatch",
                f"expected {record.expected_fee} fen, answer says {answer.total_fee} fen",
            )
    elif answer.total_fee is None and answer.trade_state in PUBLISHED_STATES:
        # Nothing to fall back on (no order amount): the event's total_fee cannot be filled.
        return "amount_missing", "a final answer without total_fee cannot be published"
    return None


def apply_answer(
    record: TradeRecord,
    answer: QueryData,
    *,
    now: float,
    policy: ReconcilePolicy,
    after_close: bool = False,
    counts_as_check: bool = False,
) -> Decision:
    """Decide what a verified query answer means for the trade.

    `after_close`: the answer follows a close call (a still-open trade is rechecked, not closed
    again at once). `counts_as_check`: the query was a reconciliation check (advances the
    backoff schedule; a notify-triggered query does not).
    """
    checks = record.checks + 1 if counts_as_check else record.checks
    mismatch = identity_mismatch(record, answer)
    if mismatch is not None:
        reason, detail = mismatch
        flagged = replace(
            record,
            phase=Phase.FLAGGED,
            flag_reason=reason,
            state=answer.trade_state,
            total_fee=answer.total_fee,
            checks=checks,
            next_check_at=None,
            updated_at=now,
        )
        return Decision("flag", flagged, reason, detail)

    state = answer.trade_state
    learnt = replace(
        record,
        state=state,
        total_fee=answer.total_fee if answer.total_fee is not None else record.total_fee,
        mch_trade_id=record.mch_trade_id
        if record.owned
        else (answer.mch_trade_id or record.mch_trade_id),
        checks=checks,
        updated_at=now,
    )
    if record.published is not None and (
        state == record.published or not can_advance(record.published, state)
    ):
        # Behind or equal to what downstream already knows: keep the published fact.
        return Decision("stale", replace(record, checks=checks, updated_at=now))
    if state in PUBLISHED_STATES:
        confirmed = replace(learnt, phase=Phase.CONFIRMED, published=state, next_check_at=None)
        return Decision("publish", confirmed)

    if record.phase is Phase.ABANDONED:
        # Given up (and dead-lettered) once already: a late notify whose answer is still not
        # final adds what we learnt, not a second dead letter.
        return Decision("update", replace(learnt, next_check_at=None))
    expires_at = record.expires_at
    if expires_at is not None and now >= policy.close_at(expires_at):
        if now >= policy.give_up_at(expires_at):
            abandoned = replace(learnt, phase=Phase.ABANDONED, next_check_at=None)
            return Decision(
                "abandon",
                abandoned,
                "unconfirmed_expired",
                f"still {state.label} {now - expires_at:.0f} s after expiry",
            )
        if record.owned and policy.close_expired and not after_close:
            return Decision("close", learnt)
    if after_close:
        learnt = replace(learnt, close_attempts=record.close_attempts + 1)
    wake = policy.next_check_at(
        trade_id=record.trade_id, checks=checks, now=now, expires_at=expires_at
    )
    return Decision("recheck", replace(learnt, phase=Phase.PENDING, next_check_at=wake))


def apply_order_created(
    record: TradeRecord | None,
    signal: OrderCreatedSignal,
    *,
    now: float,
    policy: ReconcilePolicy,
) -> Decision:
    """Record what the order expects (amount, mch_trade_id, expiry) and schedule the first check.

    If a notify already confirmed the trade (the buyer paid before this signal arrived), the
    published amount is checked after the fact: a contradiction flags the trade and dead-letters
    the evidence (the event cannot be taken back; downstream learns from the dead letter).
    Before the platform answered anything about a trade only notifies named (no order signal
    yet), its merchant and mch_trade_id came from a notify alone: the order's (from a verified
    unified-order answer) replace them, so a notify signed by another merchant cannot get the
    order's trade flagged. A second order signal contradicting the first is flagged as ever.
    """
    expires_at = signal.expires_at.timestamp()
    if record is None:
        fresh = TradeRecord(
            trade_id=signal.trade_id,
            merchant_id=signal.merchant_id,
            mch_trade_id=signal.mch_trade_id,
            expected_fee=signal.total_fee,
            expires_at=expires_at,
            owned=True,
            first_seen=now,
            updated_at=now,
        )
        wake = policy.next_check_at(
            trade_id=signal.trade_id, checks=0, now=now, expires_at=expires_at
        )
        return Decision("update", replace(fresh, next_check_at=wake))

    if (
        record.owned
        and record.expected_fee == signal.total_fee
        and record.mch_trade_id == signal.mch_trade_id
        and record.merchant_id == signal.merchant_id
    ):
        return Decision("duplicate", record)

    merged = replace(
        record,
        mch_trade_id=signal.mch_trade_id,
        expected_fee=signal.total_fee,
        expires_at=expires_at,
        owned=True,
        updated_at=now,
    )
    problem: tuple[str, str] | None = None
    if unvouched(record):
        merged = replace(merged, merchant_id=signal.merchant_id)
    elif signal.merchant_id != record.merchant_id:
        problem = (
            "merchant_mismatch",
            f"order says merchant {signal.merchant_id}, trade seen for {record.merchant_id}",
        )
    elif record.mch_trade_id is not None and record.mch_trade_id != signal.mch_trade_id:
        problem = (
            "mch_trade_id_mismatch",
            f"order says mch_trade_id {signal.mch_trade_id}, platform said {record.mch_trade_id}",
        )
    elif record.total_fee is not None and record.total_fee != signal.total_fee:
        problem = (
            "amount_mismatch",
            f"order expects {signal.total_fee} fen, platform said {record.total_fee} fen",
        )
    if problem is not None and record.phase not in _KEPT_FOR_GOOD:
        flagged = replace(
            merged,
            merchant_id=record.merchant_id,
            phase=Phase.FLAGGED,
            flag_reason=problem[0],
            next_check_at=None,
        )
        return Decision("flag", flagged, problem[0], problem[1])
    if merged.phase in (Phase.PENDING, Phase.ABANDONED):
        # Keep a check that is already due sooner; otherwise follow the (maybe new) expiry.
        # A trade given up on is looked at again: the order brings its own expiry and owner.
        wake = policy.next_check_at(
            trade_id=record.trade_id, checks=record.checks, now=now, expires_at=expires_at
        )
        if record.next_check_at is not None:
            wake = min(wake, record.next_check_at)
        return Decision("update", replace(merged, phase=Phase.PENDING, next_check_at=wake))
    return Decision("update", merged)


def unvouched(record: TradeRecord) -> bool:
    """Nothing but notifies named this trade's merchant: no order-created signal, no verified
    answer, nothing published. A notify signed by another configured merchant's key may have
    named it first; the query answers only the trade's own merchant, so such a record must
    take the merchant the next order or notify names, or the real one's payment is never
    confirmed."""
    return (
        not record.owned
        and record.state is None
        and record.published is None
        and record.phase in (Phase.PENDING, Phase.ABANDONED)
    )


def queried_as(
    record: TradeRecord, *, merchant_id: str, mch_trade_id: str | None, now: float
) -> TradeRecord:
    """The record a notify signed by `merchant_id` queries as: an unvouched record takes that
    merchant (and its `mch_trade_id`); any other stays as it is."""
    if record.merchant_id == merchant_id or not unvouched(record):
        return record
    return replace(record, merchant_id=merchant_id, mch_trade_id=mch_trade_id, updated_at=now)


def action_stamp(signal: OperatorSignal) -> str:
    """How the trade's entry names the operator signal it acted on: the operator tool waits
    for an entry carrying its own signal's stamp (audit: who acted last, and how)."""
    return f"{signal.kind} by {signal.requested_by} at {signal.requested_at.isoformat()}"


def recheck_refusal(record: TradeRecord) -> str | None:
    """Why a recheck must not reopen this trade, or None.

    - `resolved`: a human settled it (perhaps refunded the buyer by hand); a recheck could
      publish the payment behind their back.
    - `merchant_contradiction`: the order and the platform name different merchants. Which one
      the trade belongs to is not something a query settles (the stored merchant is the one
      queried as, so the answer would agree with it), only a human can.
    """
    if record.phase is Phase.RESOLVED:
        return "resolved"
    if record.phase is Phase.FLAGGED and record.flag_reason == "merchant_mismatch":
        return "merchant_contradiction"
    return None


def reopen(record: TradeRecord, *, now: float, stamp: str) -> TradeRecord:
    """The trade as an operator's recheck puts it before the query: out of flagged or given up,
    so the answer is judged afresh by `apply_answer` (which flags it again if it still
    contradicts the order). What the order expects and what was published are kept."""
    phase = Phase.CONFIRMED if record.published is not None else Phase.PENDING
    return replace(
        record,
        phase=phase,
        flag_reason=None,
        next_check_at=None,
        updated_at=now,
        operator_action=stamp,
    )


def apply_resolve(record: TradeRecord, signal: ResolveSignal, *, now: float) -> Decision:
    """A human settled a flagged trade: `update` to resolved (kept for good, nothing published);
    any other trade is left as it is (`duplicate`, with the reason)."""
    if record.phase is not Phase.FLAGGED:
        return Decision("duplicate", record, "not_flagged", f"the trade is {record.phase.value}")
    resolved = replace(
        record,
        phase=Phase.RESOLVED,
        resolved_by=signal.requested_by,
        resolution=signal.note,
        next_check_at=None,
        updated_at=now,
        operator_action=action_stamp(signal),
    )
    return Decision("update", resolved)
