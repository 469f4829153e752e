"""The trades worker end to end: sandbox over HTTP, the real ingress, a real broker.

The scenarios share one running worker (`world`); each uses its own trades and reads the
worker's counters as deltas.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from schemas.signals import KIND_HEADER, MERCHANT_HEADER, NotifySignal
from schemas.trade_state import TradeState
from tests.fixtures.broker import MERCHANT_ID, OTHER_MERCHANT_ID
from tests.trades.conftest import World
from tests.trades.rig import FlakyAnswers, sample, wait_until
from worker.trades.events import event_id

pytestmark = pytest.mark.usefixtures("clean_faults")


async def test_paid_trade_notified_ten_times_gives_exactly_one_event(world: World) -> None:
    """Ten deliveries of one notify (duplicates and platform retries) publish one event."""
    rig, metrics = world.rig, world.metrics
    signals = sample(metrics, "pooul_trades_signals_total", kind="notify")
    duplicates = sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
    # Two copies of each delivery attempt; the first 8 deliveries are answered `fail` (as if
    # our `success` were lost), so the platform makes 5 attempts: 10 deliveries in all.
    flaky = FlakyAnswers(target=rig.notify_url, fail_first=8)
    await flaky.start()
    try:
        order = await rig.create_order(total_fee=321, notify_url=flaky.url)
        await rig.faults(notify_duplicates=1)
        await rig.pay(order.trade_id)
        await wait_until(lambda: flaky.deliveries >= 10, what="10 notify deliveries")
        await wait_until(
            lambda: sample(metrics, "pooul_trades_signals_total", kind="notify") >= signals + 10,
            what="10 notify signals handled",
        )
        await wait_until(
            lambda: (
                sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
                >= duplicates + 9
            ),
            what="9 duplicates skipped",
        )
    finally:
        await flaky.stop()
    await rig.settle()
    assert flaky.deliveries == 10
    [event] = rig.events_of(order.trade_id)
    [key] = [k for k, e in rig.events if e.data.trade_id == order.trade_id]
    assert key == order.mch_trade_id.encode()
    assert event.id == event_id(MERCHANT_ID, order.trade_id, TradeState.PAID)
    assert event.type == "com.pooul.payment.succeeded"
    assert (event.data.total_fee, event.data.confirmed_by) == (321, "notify")
    assert event.data.amount_checked is True


async def test_refund_after_payment_publishes_refund_requested(world: World) -> None:
    """Paid, then refunded on the platform: the refund notify (confirmed by query) publishes a
    second event, `refund_requested`, with its own deterministic id and the paid amount."""
    rig = world.rig
    order = await rig.create_order(total_fee=640)
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the payment")
    await rig.refund(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 2, what="the refund")
    await rig.settle()
    paid, refunded = rig.events_of(order.trade_id)
    assert (paid.type, refunded.type) == (
        "com.pooul.payment.succeeded",
        "com.pooul.payment.refund_requested",
    )
    assert refunded.id == event_id(MERCHANT_ID, order.trade_id, TradeState.REFUND_REQUESTED)
    assert (refunded.data.total_fee, refunded.data.confirmed_by) == (640, "notify")


async def test_lost_notify_is_reconciled(world: World) -> None:
    """With every notify lost, reconciliation still publishes the event (confirmed_by=reconcile)."""
    rig = world.rig
    await rig.faults(notify_loss_rate=1.0)
    order = await rig.create_order(total_fee=500)
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) >= 1, what="the reconciled event")
    await rig.settle()
    [event] = rig.events_of(order.trade_id)
    assert (await rig.order(order.trade_id))["notify_attempts"] == []
    assert event.data.confirmed_by == "reconcile"
    assert event.data.total_fee == 500
    assert event.type == "com.pooul.payment.succeeded"


async def test_forged_paid_notify_publishes_nothing_and_counts_a_disagreement(
    world: World,
) -> None:
    """A validly signed notify claiming paid for an unpaid order yields no event, one disagreement."""
    rig, metrics = world.rig, world.metrics
    disagreements = sample(metrics, "pooul_trades_notify_query_disagreements_total")
    order = await rig.create_order()
    await rig.forge(order.trade_id, 0)
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_notify_query_disagreements_total") == disagreements + 1
        ),
        what="the disagreement",
    )
    # Reconciliation keeps checking; the buyer never paid, so nothing is ever published, and
    # the trade soon counts as pending past the retry span (1 s in these tests).
    checks = sample(metrics, "pooul_trades_reconcile_checks_total", status="not_paid")
    overdue = sample(metrics, "pooul_trades_pending_past_retry_span_total")
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_reconcile_checks_total", status="not_paid") >= checks + 2
        ),
        what="two more reconciliation checks",
    )
    await wait_until(
        lambda: sample(metrics, "pooul_trades_pending_past_retry_span_total") > overdue,
        what="the trade counted as pending past the retry span",
    )
    await rig.settle()
    assert rig.events_of(order.trade_id) == []


async def test_amount_mismatch_is_dead_lettered_not_published(world: World) -> None:
    """A paid amount differing from the order flags the trade: dead letter with reason, no event."""
    rig, metrics = world.rig, world.metrics
    mismatches = sample(metrics, "pooul_trades_mismatches_total", reason="amount_mismatch")
    flagged = sample(metrics, "pooul_trades_flagged_signals_skipped_total")
    order = await rig.create_order(total_fee=1000)
    await rig.pay(order.trade_id, total_fee=1)

    def letters() -> list:
        return [d for d in rig.dead_letters if d.key is not None and d.key.data == order.trade_id]

    await wait_until(lambda: len(letters()) >= 1, what="the dead letter")
    # A later notify for a flagged trade changes nothing.
    await rig.forge(order.trade_id, 3)
    await wait_until(
        lambda: sample(metrics, "pooul_trades_flagged_signals_skipped_total") >= flagged + 1,
        what="the flagged trade's next notify skipped",
    )
    await rig.settle()
    assert rig.events_of(order.trade_id) == []
    [letter] = letters()
    assert (letter.reason, letter.service, letter.outcome) == (
        "amount_mismatch",
        "trades",
        "permanent",
    )
    assert "expected 1000 fen, answer says 1 fen" in letter.detail
    evidence = orjson.loads(letter.detail.split("evidence: ", 1)[1])
    assert evidence["answer"]["total_fee"] == 1
    assert evidence["expected_total_fee"] == 1000
    assert (
        sample(metrics, "pooul_trades_mismatches_total", reason="amount_mismatch") == mismatches + 1
    )


async def test_paid_trade_stays_paid_after_late_closed_and_unpaid_claims(world: World) -> None:
    """After paid, late 'closed'/'unpaid'/'failed' notifies and a stale answer publish nothing."""
    rig, metrics = world.rig, world.metrics
    order = await rig.create_order()
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the paid event")
    duplicates = sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
    stale = sample(metrics, "pooul_trades_stale_answers_total")
    for claim in (3, 2, 7):
        await rig.forge(order.trade_id, claim)
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
            >= duplicates + 3
        ),
        what="the late claims skipped",
    )
    # A refund claim could move the trade on, so it is queried: still paid → stale, ignored.
    await rig.forge(order.trade_id, 1)
    await wait_until(
        lambda: sample(metrics, "pooul_trades_stale_answers_total") == stale + 1,
        what="the stale answer",
    )
    await rig.settle()
    assert [e.type for e in rig.events_of(order.trade_id)] == ["com.pooul.payment.succeeded"]


async def test_repeated_order_created_signal_is_recorded_once(world: World) -> None:
    """A second order-created signal for one trade with other created_at/expires_at (the orders
    worker's crash window) is skipped; the payment still gives exactly one checked event."""
    rig, metrics = world.rig, world.metrics
    duplicates = sample(metrics, "pooul_trades_duplicates_skipped_total", signal="order_created")
    order = await rig.create_order(total_fee=640)
    await rig.send_order_created(order, expires_at=time.time() + 7200)
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_duplicates_skipped_total", signal="order_created")
            == duplicates + 1
        ),
        what="the repeated signal skipped",
    )
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) >= 1, what="the paid event")
    await rig.settle()
    [event] = rig.events_of(order.trade_id)
    assert event.type == "com.pooul.payment.succeeded"
    assert (event.data.total_fee, event.data.amount_checked) == (640, True)


async def test_confirmed_trade_is_not_reopened_by_a_query_that_finds_nothing(
    world: World,
) -> None:
    """A refund claim for a paid trade whose query answers 301 leaves the trade confirmed: no
    reconciliation starts, the next late claim is skipped unqueried, one event in all."""
    rig, metrics = world.rig, world.metrics
    # Its own merchant, so the forced 301 touches no other scenario's trades.
    order = await rig.create_order(merchant_id=OTHER_MERCHANT_ID)
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the paid event")
    not_found = sample(metrics, "pooul_trades_query_errors_total", error="OrderNotFound")
    duplicates = sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
    await rig.faults(merchant_id=OTHER_MERCHANT_ID, force_code=301, force_code_endpoints=["query"])
    await rig.forge(order.trade_id, 1)
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_query_errors_total", error="OrderNotFound")
            == not_found + 1
        ),
        what="the 301 answer",
    )
    await rig.clear_faults()
    await rig.forge(order.trade_id, 3)
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
            == duplicates + 1
        ),
        what="the late claim skipped as a duplicate",
    )
    await rig.settle()
    assert [e.type for e in rig.events_of(order.trade_id)] == ["com.pooul.payment.succeeded"]
    assert [e.data.merchant_id for e in rig.events_of(order.trade_id)] == [OTHER_MERCHANT_ID]
    assert (
        sample(metrics, "pooul_trades_query_errors_total", error="OrderNotFound") == not_found + 1
    )


async def test_expired_unpaid_order_is_closed_and_published_closed(world: World) -> None:
    """An owned order past time_expire is closed via the close API, then a closed event."""
    rig = world.rig
    order = await rig.create_order(total_fee=250, expire_in=1.0)
    await wait_until(
        lambda: len(rig.events_of(order.trade_id)) >= 1, within=15, what="the closed event"
    )
    await rig.settle()
    [event] = rig.events_of(order.trade_id)
    assert event.type == "com.pooul.payment.closed"
    assert (event.data.status, event.data.total_fee) == ("closed", 250)
    assert event.data.confirmed_by == "reconcile"
    platform = await rig.order(order.trade_id)
    assert (platform["trade_state"], platform["closed_by"]) == (3, "merchant")


async def test_notify_without_order_signal_publishes_with_amount_unchecked(world: World) -> None:
    """A trade created outside this service is confirmed by query; its event says unchecked."""
    rig = world.rig
    order = await rig.create_order(total_fee=77, signal=False)
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) >= 1, what="the event")
    await rig.settle()
    [event] = rig.events_of(order.trade_id)
    assert event.subject == order.mch_trade_id
    assert event.data.amount_checked is False
    assert event.data.total_fee == 77


async def test_poison_signal_is_dead_lettered_and_its_partition_moves_on(world: World) -> None:
    """A record that is not a trade signal is dead-lettered; the same key's next signal flows."""
    rig, settings = world.rig, world.settings
    order = await rig.create_order(signal=False)
    await rig.producer.send_and_wait(
        settings.pooul_topic_trade_signals, b'{"kind": "nonsense"}', key=order.trade_id.encode()
    )
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) >= 1, what="the event")
    await rig.settle()
    assert len(rig.events_of(order.trade_id)) == 1
    [letter] = [d for d in rig.dead_letters if d.key is not None and d.key.data == order.trade_id]
    assert (letter.reason, letter.outcome, letter.kind) == ("invalid_signal", "permanent", "record")
    assert letter.value is not None and letter.value.to_bytes() == b'{"kind": "nonsense"}'

    # A valid signal without a key would share the keyless entry with every other one.
    keyless = b'{"kind": "order_created", "trade_id": "KEYLESS-1", "merchant_id": "888", '
    keyless += b'"mch_trade_id": "M1", "total_fee": 1, "expires_at": "2030-01-01T00:00:00Z", '
    keyless += b'"created_at": "2026-01-01T00:00:00Z"}'
    await rig.producer.send_and_wait(settings.pooul_topic_trade_signals, keyless, key=None)
    await wait_until(lambda: any(d.key is None for d in rig.dead_letters), what="its dead letter")
    [unkeyed] = [d for d in rig.dead_letters if d.key is None]
    assert unkeyed.reason == "invalid_signal" and "no key" in unkeyed.detail


async def test_pooul_faults_still_give_correct_events_and_nothing_unverified(world: World) -> None:
    """With latency, HTTP 500s, code 601 and bad response signatures, every paid trade still
    gets exactly one correct event, and only verified answers are published.

    Each fault is first applied alone to one paid trade until the worker has met it (so the test
    never depends on random draws hitting every kind); nothing may be published meanwhile.
    """
    rig, metrics = world.rig, world.metrics
    orders = [await rig.create_order(total_fee=100 + i) for i in range(20)]
    first = orders[0]
    for fault, error in (
        ("bad_signature_rate", "ResponseSignatureError"),
        ("error_500_rate", "TransportError"),
        ("code_601_rate", "RetryablePlatformError"),
    ):
        before = sample(metrics, "pooul_trades_query_errors_total", error=error)
        await rig.faults(**{fault: 1.0})
        if fault == "bad_signature_rate":
            await rig.pay(first.trade_id)
        await wait_until(
            lambda error=error, before=before: (
                sample(metrics, "pooul_trades_query_errors_total", error=error) > before
            ),
            within=30,
            what=f"a query failing with {error}",
        )
        assert not rig.events_of(first.trade_id)
    await rig.faults(
        latency_ms=[0, 20], error_500_rate=0.25, code_601_rate=0.2, bad_signature_rate=0.25
    )
    await asyncio.gather(*(rig.pay(o.trade_id) for o in orders[1:]))
    await wait_until(
        lambda: all(rig.events_of(o.trade_id) for o in orders), within=60, what="20 events"
    )
    await rig.clear_faults()
    await rig.settle()
    for order in orders:
        [event] = rig.events_of(order.trade_id)
        platform = await rig.order(order.trade_id)
        assert event.id == event_id(MERCHANT_ID, order.trade_id, TradeState.PAID)
        assert event.data.total_fee == platform["paid_fee"] == order.total_fee
        assert event.data.ch_trade_id == platform["ch_trade_id"]
        assert event.data.out_trade_id == platform["out_trade_id"]


async def test_notify_for_a_trade_the_query_api_does_not_know_is_given_up(world: World) -> None:
    """A verified notify whose trade the query API never finds publishes nothing; once expired
    it is dead-lettered as `unconfirmed_expired` (from reconciliation, so kind `timer`)."""
    rig, settings = world.rig, world.settings
    trade_id = f"T{uuid.uuid4().hex[:16]}"
    body = {
        "code": 0,
        "data": {
            "merchant_id": MERCHANT_ID,
            "trade_id": trade_id,
            "mch_trade_id": "X1",
            "trade_state": 0,
        },
        "sign": "not-checked-here",
    }
    signal = NotifySignal(
        trade_id=trade_id,
        merchant_id=MERCHANT_ID,
        received_at=datetime.now(UTC),
        body=orjson.dumps(body).decode(),
    )
    await rig.producer.send_and_wait(
        settings.pooul_topic_trade_signals,
        signal.model_dump_json().encode(),
        key=trade_id.encode(),
        headers=[(KIND_HEADER, b"notify"), (MERCHANT_HEADER, MERCHANT_ID.encode())],
    )

    def letters() -> list:
        return [d for d in rig.dead_letters if d.key is not None and d.key.data == trade_id]

    await wait_until(lambda: len(letters()) >= 1, within=15, what="the dead letter")
    [letter] = letters()
    assert (letter.reason, letter.kind, letter.service) == (
        "unconfirmed_expired",
        "timer",
        "trades",
    )
    await rig.settle()
    assert rig.events_of(trade_id) == []


async def test_a_notify_of_another_merchant_first_does_not_keep_the_real_ones_payment_out(
    world: World,
) -> None:
    """A trade this service did not order is first named by a notify signed with another
    configured merchant's key (a leaked key, say): querying as that merchant finds nothing
    (301) and the trade waits as that merchant's. The real merchant's paid notify must be
    queried as the real merchant — else its payment is never published."""
    rig = world.rig
    order = await rig.create_order(merchant_id=OTHER_MERCHANT_ID, signal=False)
    claimed = NotifySignal(
        trade_id=order.trade_id,
        merchant_id=MERCHANT_ID,
        received_at=datetime.now(UTC),
        body=orjson.dumps(
            {"code": 0, "data": {"trade_id": order.trade_id, "trade_state": 0}}
        ).decode(),
    )
    not_found = sample(world.metrics, "pooul_trades_query_errors_total", error="OrderNotFound")
    await rig.producer.send_and_wait(
        world.settings.pooul_topic_trade_signals,
        claimed.model_dump_json().encode(),
        key=order.trade_id.encode(),
    )
    await wait_until(
        lambda: (
            sample(world.metrics, "pooul_trades_query_errors_total", error="OrderNotFound")
            > not_found
        ),
        what="the claim queried as the wrong merchant (301)",
    )
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the paid event")
    [event] = rig.events_of(order.trade_id)
    assert event.type == "com.pooul.payment.succeeded"
    assert event.data.merchant_id == OTHER_MERCHANT_ID


async def test_loosely_typed_notifies_and_answers_still_give_the_right_event(world: World) -> None:
    """The platform may send `total_fee` as `"100"` and fields the docs do not list (sandbox
    fault `loose_types`): the ingress verifies over the raw data, the worker reads the amount,
    and the paid event carries 100 fen."""
    rig = world.rig
    await rig.faults(merchant_id=OTHER_MERCHANT_ID, loose_types=True)
    try:
        order = await rig.create_order(merchant_id=OTHER_MERCHANT_ID, total_fee=100)
        await rig.pay(order.trade_id)
        await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the paid event")
    finally:
        await rig.clear_faults()
    [event] = rig.events_of(order.trade_id)
    assert event.type == "com.pooul.payment.succeeded"
    assert event.data.total_fee == 100
