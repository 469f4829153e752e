"""The trades worker's stream handler: signals and timers in, confirmed payment events out.

For one trade (one key of `pooul.trade-signals.v1`) the runtime calls this strictly one at a
time. Per call the order of effects is: publish the event (or the dead letter), write the
trade's state, return — and only then may the runtime commit the signal's offset. A crash at
any point repeats work (the same event id again), never loses it.

- *notify*: skip if the trade already reached what the notify could report; else query Pooul
  (signature verified by the client) and act on the **query's** answer.
- *order created*: record the expected amount, mch_trade_id and expiry; schedule a check.
- *timer*: query a pending trade; publish when final; close it once expired (if configured).
- *recheck* (an operator): query the trade now and decide by the usual rules, flagged or given
  up or not; *resolve* (an operator): a flagged trade becomes resolved, nothing published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from schemas.dead_letter import DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SERVICE_HEADER
from schemas.pooul import QueryData
from schemas.signals import (
    NotifySignal,
    OperatorSignal,
    OrderCreatedSignal,
    RecheckSignal,
    parse_trade_signal,
)
from schemas.trade_state import TradeState
from worker.pooul import PooulClient
from worker.pooul.errors import (
    MalformedResponse,
    MerchantKeyMissing,
    OrderNotFound,
    PlatformError,
    PooulError,
    RequestRefused,
    TransportError,
)
from worker.runtime import (
    KeyContext,
    Permanent,
    Record,
    RemoteRefused,
    RemoteUnavailable,
    Retry,
)
from worker.runtime.deadletter import record_dead_letter, timer_dead_letter
from worker.settings import Settings
from worker.trades.events import build_event, encode_event, event_headers
from worker.trades.metrics import TradesMetrics
from worker.trades.reconcile import ReconcilePolicy
from worker.trades.state import (
    Decision,
    Phase,
    TradeRecord,
    action_stamp,
    apply_answer,
    apply_order_created,
    apply_resolve,
    classify_notify,
    new_notify_record,
    queried_as,
    recheck_refusal,
    reopen,
)

__all__ = ["TradesHandler"]

log = logging.getLogger(__name__)

_SERVICE = "trades"
ConfirmedBy = Literal["notify", "reconcile"]


@dataclass(frozen=True, slots=True)
class _Claims:
    """What a notify says (never trusted: it only decides whether to ask)."""

    state: TradeState | None
    mch_trade_id: str | None


def _notify_claims(signal: NotifySignal) -> _Claims:
    try:
        envelope = orjson.loads(signal.body)
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict):
            return _Claims(None, None)
        raw_state = data.get("trade_state")
        state = TradeState(int(raw_state)) if raw_state is not None else None
        mch = data.get("mch_trade_id")
        return _Claims(state, str(mch) if mch not in (None, "") else None)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        # The ingress verified this body; if we cannot read it, the query still decides.
        return _Claims(None, None)


class TradesHandler:
    """The runtime `Handler` for trade signals.

    Keyword arguments:
    - `settings`: topics (payment events, dead letters) and the event source.
    - `client`: a started `PooulClient` (query and close; responses signature-verified).
    - `metrics`: where the `pooul_trades_*` series live.
    - `policy`: reconciliation timing (from settings when omitted).
    - `clock`: Unix seconds (tests may pass a fake one).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        client: PooulClient,
        metrics: TradesMetrics,
        policy: ReconcilePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._policy = policy if policy is not None else ReconcilePolicy.from_settings(settings)
        self._clock = clock
        self._events_topic = settings.pooul_topic_payment_events
        self._dead_letters_topic = settings.pooul_topic_dead_letters
        self._state_topic = settings.pooul_topic_trade_state
        self._source = settings.pooul_event_source

    # --- runtime entry points ------------------------------------------------------------

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        """One trade signal: a notify or an order-created signal (anything else is poison)."""
        if record.value is None:
            raise Permanent("invalid_signal", "trade signal without a value (tombstone)")
        try:
            signal = parse_trade_signal(record.value)
        except ValidationError as exc:
            raise Permanent("invalid_signal", str(exc)[:1000]) from None
        # The key is the trade's state: a keyless record would share one entry with every
        # other keyless signal (the runtime files them under b""), mixing unrelated trades.
        if record.key is None or record.key != signal.trade_id.encode():
            shown = "no key" if record.key is None else f"record key {record.key!r:.80}"
            raise Permanent(
                "invalid_signal", f"{shown} is not the signal's trade_id {signal.trade_id!r}"
            )
        if ctx.attempt == 1:
            self._metrics.signals.labels(kind=signal.kind).inc()
        stored = self._load(ctx)
        if isinstance(signal, NotifySignal):
            await self._on_notify(signal, stored, ctx)
        elif isinstance(signal, OrderCreatedSignal):
            await self._on_order_created(signal, stored, ctx)
        else:
            await self._on_operator(signal, stored, ctx)

    async def on_timer(self, ctx: KeyContext) -> None:
        """A reconciliation check of a pending trade: query, then publish, close or recheck."""
        try:
            stored = self._load(ctx)
        except Permanent as exc:
            # A timer's dead letter is not replayable: keep the entry as it is and look again
            # later, so reconciliation resumes once a release that can read it runs.
            log.error(
                "unreadable trade state; its check is put off",
                extra={"key": ctx.key[:80], "error": exc.detail[:300]},
            )
            self._metrics.unreadable_states.inc()
            await ctx.set_state(ctx.state, wake_at=self._clock() + self._policy.max_interval)
            return
        if stored is None or stored.phase is not Phase.PENDING:
            return
        now = self._clock()
        if not stored.overdue and now - stored.first_seen >= self._policy.overdue_after:
            self._metrics.overdue.inc()
            log.warning(
                "trade pending past the notify retry span",
                extra={"trade_id": stored.trade_id, "merchant_id": stored.merchant_id},
            )
            stored = replace(stored, overdue=True)
        answer = await self._query_or_reschedule(stored, ctx, timer=True, advance=True)
        if answer is None:
            return
        self._metrics.reconcile_checks.labels(status=answer.trade_state.label).inc()
        await self._settle(
            stored, answer, ctx, confirmed_by="reconcile", timer=True, counts_as_check=True
        )

    # --- signals -------------------------------------------------------------------------

    async def _on_notify(
        self, signal: NotifySignal, stored: TradeRecord | None, ctx: KeyContext
    ) -> None:
        claims = _notify_claims(signal)
        verdict = classify_notify(stored, claims.state)
        if verdict == "duplicate":
            self._metrics.duplicates.labels(signal="notify").inc()
            return
        if verdict == "flagged":
            self._metrics.flagged_skips.inc()
            assert stored is not None
            # Written again, so an entry flagged by an older release (with the dedup expiry)
            # is kept until a human acts too.
            await self._write(ctx, stored)
            return
        now = self._clock()
        if stored is None:
            record = new_notify_record(
                trade_id=signal.trade_id,
                merchant_id=signal.merchant_id,
                mch_trade_id=claims.mch_trade_id,
                now=now,
                policy=self._policy,
            )
        else:
            record = queried_as(
                stored, merchant_id=signal.merchant_id, mch_trade_id=claims.mch_trade_id, now=now
            )
        answer = await self._query_or_reschedule(record, ctx, timer=False, advance=False)
        if answer is None:
            return
        if claims.state is TradeState.PAID and answer.trade_state is not TradeState.PAID:
            self._metrics.disagreements.inc()
            log.warning(
                "notify said paid, query did not",
                extra={
                    "trade_id": record.trade_id,
                    "merchant_id": record.merchant_id,
                    "query_state": int(answer.trade_state),
                },
            )
        await self._settle(
            record,
            answer,
            ctx,
            confirmed_by="notify",
            timer=False,
            counts_as_check=False,
            received_at=signal.received_at,
        )

    async def _on_order_created(
        self, signal: OrderCreatedSignal, stored: TradeRecord | None, ctx: KeyContext
    ) -> None:
        decision = apply_order_created(stored, signal, now=self._clock(), policy=self._policy)
        if decision.kind == "duplicate":
            self._metrics.duplicates.labels(signal="order_created").inc()
            return
        if decision.kind == "flag":
            evidence = {"order_created": signal.model_dump(mode="json")}
            await self._dead_letter(ctx, decision, evidence=evidence)
            self._metrics.mismatches.labels(reason=decision.reason).inc()
        await self._write(ctx, decision.record)

    async def _on_operator(
        self, signal: OperatorSignal, stored: TradeRecord | None, ctx: KeyContext
    ) -> None:
        """A human's decision about one trade; its outcome goes to the log line and the metric
        (the operator tool also shows the trade's state entry when one is written)."""
        outcome = await self._operator_outcome(signal, stored, ctx)
        self._metrics.operator_signals.labels(kind=signal.kind, outcome=outcome).inc()
        log.warning(
            "operator signal",
            extra={
                "trade_id": signal.trade_id,
                "kind": signal.kind,
                "outcome": outcome,
                "requested_by": signal.requested_by,
                "note": signal.note,
                "phase_before": None if stored is None else stored.phase.value,
            },
        )

    async def _operator_outcome(
        self, signal: OperatorSignal, stored: TradeRecord | None, ctx: KeyContext
    ) -> str:
        if stored is None:
            # Without an entry there is no merchant to query as: nothing this service knows.
            return "unknown_trade"
        if not isinstance(signal, RecheckSignal):
            decision = apply_resolve(stored, signal, now=self._clock())
            if decision.kind == "duplicate":
                return decision.reason
            await self._write(ctx, decision.record)
            return "resolved"
        refusal = recheck_refusal(stored)
        if refusal is not None:
            return refusal
        reopened = reopen(stored, now=self._clock(), stamp=action_stamp(signal))
        try:
            answer = await self._query(reopened)
        except OrderNotFound:
            return "not_found"  # nothing to judge by: the trade stays as it was
        except PooulError as exc:
            # Retried (an outage never exhausts) or dead-lettered; the stored trade is untouched.
            raise _runtime_error(exc) from exc
        decision = await self._settle(
            reopened, answer, ctx, confirmed_by="reconcile", timer=False, counts_as_check=False
        )
        if decision.kind == "stale":
            # What was published agrees with the platform and the order again (e.g. a trade
            # flagged by a late order signal): confirmed, flag cleared. Nothing to publish.
            await self._write(ctx, decision.record)
        return decision.kind

    # --- querying ------------------------------------------------------------------------

    async def _query(self, record: TradeRecord) -> QueryData:
        started = time.perf_counter()
        try:
            return await self._client.query_order(record.merchant_id, trade_id=record.trade_id)
        except PooulError as exc:
            self._metrics.query_errors.labels(error=type(exc).__name__).inc()
            raise
        finally:
            self._metrics.query_seconds.observe(time.perf_counter() - started)

    async def _query_or_reschedule(
        self, record: TradeRecord, ctx: KeyContext, *, timer: bool, advance: bool
    ) -> QueryData | None:
        """The verified answer; None when the trade was rescheduled instead (no answer yet).

        From a signal, a failed query becomes the runtime's Retry/Permanent, but first the
        trade is made durable as pending with a check scheduled: even if the signal's retries
        run out (dead letter), reconciliation still finds the trade. From a timer, Pooul being
        unreachable is the runtime's RemoteUnavailable (retried, never exhausted); any other
        failure is retried by the next check. `advance`: a failure moves the trade along the
        backoff schedule.
        """
        try:
            return await self._query(record)
        except OrderNotFound:
            # Not (yet) known to the query API: no answer to act on; look again later. From a
            # signal, a trade already confirmed (or flagged) stays exactly as it is.
            if timer:
                await self._reschedule(record, ctx, advance=advance)
            else:
                await self._ensure_scheduled(record, ctx)
            return None
        except PooulError as exc:
            if timer and not isinstance(exc, TransportError | RequestRefused):
                # The next check is the retry (a runtime retry could exhaust and drop the timer).
                log.info(
                    "reconciliation query failed; rescheduled",
                    extra={"trade_id": record.trade_id, "error": str(exc)},
                )
                await self._reschedule(record, ctx, advance=advance)
                return None
            # Pooul unreachable or refusing (from a timer: RemoteUnavailable, never exhausts,
            # feeds the circuit breaker), or a signal's query failed: make sure reconciliation
            # will find the trade.
            await self._ensure_scheduled(record, ctx)
            raise _runtime_error(exc, timer=timer) from exc
        except Permanent:
            if timer:
                await self._reschedule(record, ctx, advance=advance)
            else:
                await self._ensure_scheduled(record, ctx)
            raise

    async def _reschedule(self, record: TradeRecord, ctx: KeyContext, *, advance: bool) -> None:
        now = self._clock()
        checks = record.checks + 1 if advance else record.checks
        expires_at = record.expires_at
        if expires_at is not None and now >= self._policy.give_up_at(expires_at):
            abandoned = replace(record, phase=Phase.ABANDONED, next_check_at=None, updated_at=now)
            decision = Decision(
                "abandon", abandoned, "unconfirmed_expired", "no answer from the query API"
            )
            await self._dead_letter(ctx, decision, evidence={})
            self._metrics.abandoned.inc()
            await self._write(ctx, abandoned)
            return
        wake = self._policy.next_check_at(
            trade_id=record.trade_id, checks=checks, now=now, expires_at=expires_at
        )
        pending = replace(
            record, phase=Phase.PENDING, checks=checks, next_check_at=wake, updated_at=now
        )
        await self._write(ctx, pending)

    async def _ensure_scheduled(self, record: TradeRecord, ctx: KeyContext) -> None:
        """Make sure the stored trade will be looked at again (a first notify stored nothing);
        confirmed, flagged and abandoned trades stay as they are. A pending trade counts as
        scheduled only while its timer is really set: the runtime clears a timer whose retries
        ran out, and the stored `next_check_at` would then promise a check that never comes."""
        if ctx.state is not None:
            if record.phase in (Phase.CONFIRMED, Phase.FLAGGED, Phase.RESOLVED, Phase.ABANDONED):
                return
            if record.phase is Phase.PENDING and ctx.wake_at is not None:
                return
        await self._reschedule(record, ctx, advance=False)

    async def _close(self, record: TradeRecord) -> None:
        """Ask the platform to close an expired unpaid trade; the query that follows decides."""
        try:
            await self._client.close_order(record.merchant_id, trade_id=record.trade_id)
            outcome = "closed"
        except (PlatformError, MerchantKeyMissing) as exc:
            # e.g. 600 ORDER_PAID: the buyer paid at the last moment. The query will say so.
            outcome = "refused"
            log.info("close refused", extra={"trade_id": record.trade_id, "error": str(exc)})
        except TransportError as exc:
            outcome = "error"
            log.info("close failed", extra={"trade_id": record.trade_id, "error": str(exc)})
        except PooulError as exc:
            outcome = "error"
            log.info("close not verified", extra={"trade_id": record.trade_id, "error": str(exc)})
        self._metrics.closes.labels(outcome=outcome).inc()

    # --- carrying out decisions ----------------------------------------------------------

    async def _settle(
        self,
        record: TradeRecord,
        answer: QueryData,
        ctx: KeyContext,
        *,
        confirmed_by: ConfirmedBy,
        timer: bool,
        counts_as_check: bool,
        received_at: datetime | None = None,
    ) -> Decision:
        """Decide on a verified answer and carry the decision out; returns the one carried out."""
        now = self._clock()
        decision = apply_answer(
            record, answer, now=now, policy=self._policy, counts_as_check=counts_as_check
        )
        if decision.kind == "close":
            await self._close(decision.record)
            after = await self._query_or_reschedule(
                decision.record, ctx, timer=timer, advance=False
            )
            if after is None:
                return decision
            answer, confirmed_by, received_at = after, "reconcile", None
            decision = apply_answer(
                decision.record, answer, now=self._clock(), policy=self._policy, after_close=True
            )
        await self._carry_out(
            decision, answer, ctx, confirmed_by=confirmed_by, received_at=received_at
        )
        return decision

    async def _carry_out(
        self,
        decision: Decision,
        answer: QueryData,
        ctx: KeyContext,
        *,
        confirmed_by: ConfirmedBy,
        received_at: datetime | None,
    ) -> None:
        if decision.kind == "publish":
            await self._publish(decision.record, answer, ctx, confirmed_by, received_at)
        elif decision.kind == "stale":
            self._metrics.stale_answers.inc()
            log.info(
                "answer behind the published state; ignored",
                extra={
                    "trade_id": decision.record.trade_id,
                    "published": decision.record.published,
                    "answered": int(answer.trade_state),
                },
            )
            return
        elif decision.kind in ("flag", "abandon"):
            evidence = {"answer": answer.model_dump(mode="json")}
            await self._dead_letter(ctx, decision, evidence=evidence)
            if decision.kind == "flag":
                self._metrics.mismatches.labels(reason=decision.reason).inc()
            else:
                self._metrics.abandoned.inc()
        await self._write(ctx, decision.record)

    async def _publish(
        self,
        record: TradeRecord,
        answer: QueryData,
        ctx: KeyContext,
        confirmed_by: ConfirmedBy,
        received_at: datetime | None,
    ) -> None:
        confirmed_at = datetime.fromtimestamp(self._clock(), UTC)
        event = build_event(
            answer,
            record,
            confirmed_by=confirmed_by,
            confirmed_at=confirmed_at,
            source_base=self._source,
        )
        await ctx.send(
            self._events_topic,
            encode_event(event),
            key=event.subject.encode(),
            headers=event_headers(event),
        )
        self._metrics.events.labels(type=event.type).inc()
        if received_at is not None:
            self._metrics.notify_to_event_seconds.observe(
                max(0.0, self._clock() - received_at.timestamp())
            )
        log.info(
            "payment event published",
            extra={
                "trade_id": event.data.trade_id,
                "merchant_id": event.data.merchant_id,
                "mch_trade_id": event.subject,
                "type": event.type,
                "event_id": event.id,
                "confirmed_by": confirmed_by,
            },
        )

    async def _dead_letter(
        self, ctx: KeyContext, decision: Decision, *, evidence: dict[str, Any]
    ) -> None:
        """Evidence of a trade that needs a human, as a `DeadLetter` (schemas.dead_letter).

        The letter wraps the signal being handled (replayable; a replay finds the trade
        flagged and skips) or, from reconciliation, the trade's stored state. The evidence
        (the verified answer, what the order expected) is JSON after the detail line.
        """
        record = decision.record
        facts = {
            "trade_id": record.trade_id,
            "merchant_id": record.merchant_id,
            "mch_trade_id": record.mch_trade_id,
            "expected_total_fee": record.expected_fee,
            "published_state": None if record.published is None else int(record.published),
            **evidence,
        }
        detail = f"{decision.detail}\nevidence: {orjson.dumps(facts).decode()}"
        now = self._clock()
        if ctx.record is not None:
            letter = record_dead_letter(
                ctx.record,
                service=_SERVICE,
                outcome="permanent",
                reason=decision.reason,
                detail=detail,
                attempts=ctx.attempt,
                now=now,
            )
        else:
            letter = timer_dead_letter(
                service=_SERVICE,
                state_topic=self._state_topic,
                partition=ctx.partition,
                key=ctx.key,
                state=ctx.state,
                wake_at=ctx.wake_at or now,
                outcome="permanent",
                reason=decision.reason,
                detail=detail,
                attempts=ctx.attempt,
                now=now,
            )
        await ctx.send(
            self._dead_letters_topic,
            letter.model_dump_json().encode(),
            key=ctx.key,
            headers=[
                *letter.original_headers(),
                (DEAD_LETTER_REASON_HEADER, letter.reason.encode()),
                (DEAD_LETTER_SERVICE_HEADER, letter.service.encode()),
            ],
        )
        log.warning(
            "trade dead-lettered",
            extra={
                "trade_id": record.trade_id,
                "reason": decision.reason,
                "detail": decision.detail,
            },
        )

    async def _write(self, ctx: KeyContext, record: TradeRecord) -> None:
        wake = record.next_check_at if record.phase is Phase.PENDING else None
        await ctx.set_state(
            record.to_json(), wake_at=wake, expires_at=record.keep_until(self._policy)
        )

    def _load(self, ctx: KeyContext) -> TradeRecord | None:
        if ctx.state is None:
            return None
        try:
            return TradeRecord.from_json(ctx.state)
        except ValueError as exc:
            # Not "no entry": the entry may be a flag or the order's amount, and starting
            # afresh would publish what it forbids. Dead-letter the signal (or timer) instead;
            # after a fix (e.g. a rolled-back release rolled forward) a replay handles it.
            raise Permanent("unreadable_state", str(exc)[:1000]) from None


def _runtime_error(exc: PooulError, *, timer: bool = False) -> Exception:
    """The runtime's flow-control exception for a failed query. A refusal on the way (HTTP 4xx)
    is counted for a signal (its retries end in a dead letter; reconciliation still finds the
    trade) and an outage for a timer (a timer whose retries ran out would be dropped); a
    breaker failure either way."""
    reason = type(exc).__name__
    if isinstance(exc, MerchantKeyMissing):
        return Permanent("merchant_key_missing", str(exc))
    if isinstance(exc, MalformedResponse):
        # Signed by the platform yet not a query answer we understand (e.g. an unknown state):
        # retrying in seconds gets the same answer. The trade stays scheduled for
        # reconciliation, which asks again on its own schedule.
        return Permanent("unreadable_answer", str(exc)[:1000])
    if isinstance(exc, TransportError) or (timer and isinstance(exc, RequestRefused)):
        return RemoteUnavailable(f"pooul_unavailable: {exc}")
    if isinstance(exc, RequestRefused):
        return RemoteRefused(f"pooul_refused: {exc}")
    if exc.retryable:
        return Retry(f"{reason}: {exc}")
    if isinstance(exc, PlatformError):
        return Permanent(f"pooul_code_{exc.code}", str(exc))
    return Permanent("pooul_error", str(exc))
