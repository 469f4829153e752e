"""Operator actions on one trade (`pooul-worker trade recheck|resolve`) through the real worker.

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

from schemas.signals import RecheckSignal, ResolveSignal
from schemas.trade_state import TradeState
from tests.trades.conftest import World
from tests.trades.rig import PlacedOrder, TradesRig, sample, wait_until
from worker.cli import build_parser
from worker.trades.operator import act_on_trade
from worker.trades.state import Phase

pytestmark = pytest.mark.usefixtures("clean_faults")

OPERATOR = "pooul_trades_operator_signals_total"


def recheck(trade_id: str) -> RecheckSignal:
    return RecheckSignal(trade_id=trade_id, requested_by="alice", requested_at=datetime.now(UTC))


def letters_of(rig: TradesRig, trade_id: str) -> list:
    return [d for d in rig.dead_letters if d.key is not None and d.key.data == trade_id]


async def flagged_trade(rig: TradesRig) -> str:
    """A trade the platform says was paid 1 fen for an order of 1000: flagged."""
    order = await rig.create_order(total_fee=1000)
    await rig.pay(order.trade_id, total_fee=1)
    await wait_until(lambda: len(letters_of(rig, order.trade_id)) >= 1, what="the flag")
    return order.trade_id


async def cli(*argv: str, settings) -> int:
    """Run `pooul-worker …` (it calls asyncio.run) outside the test's event loop."""
    args = build_parser().parse_args(list(argv))
    code: int = await asyncio.to_thread(args.run, args, settings)
    return code


async def test_flagged_trade_rechecked_stays_flagged_then_resolved(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recheck of a still-contradicting trade flags it again (a second dead letter, nothing
    published); resolve settles it for good: later notifies are skipped; a second resolve finds
    nothing flagged. Both through the CLI, which prints the trade's state."""
    rig, metrics, settings = world.rig, world.metrics, world.settings
    trade_id = await flagged_trade(rig)
    before = {
        o: sample(metrics, OPERATOR, kind="resolve", outcome=o) for o in ("resolved", "not_flagged")
    }

    assert await cli("trade", "recheck", trade_id, "--by", "alice", settings=settings) == 0
    out = capsys.readouterr().out
    assert f"recheck of trade {trade_id} by alice written to" in out
    assert f"trade {trade_id}: flagged (amount_mismatch)" in out
    await wait_until(lambda: len(letters_of(rig, trade_id)) == 2, what="the second dead letter")
    assert letters_of(rig, trade_id)[1].reason == "amount_mismatch"
    assert await cli("trade", "list", settings=settings) == 0  # default: the flagged ones
    [line] = [line for line in capsys.readouterr().out.splitlines() if trade_id in line]
    assert line.split()[3:6] == ["flagged", "amount_mismatch", "1000/1"]

    code = await cli(
        "trade", "resolve", trade_id, "--by", "bob", "--note", "refunded, ticket 42",
        settings=settings,
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"trade {trade_id}: resolved by bob: refunded, ticket 42" in out
    assert await cli("trade", "list", "--phase", "resolved", settings=settings) == 0
    assert trade_id in capsys.readouterr().out
    assert await cli("trade", "list", settings=settings) == 0
    assert trade_id not in capsys.readouterr().out
    assert await cli("trade", "show", trade_id, "--json", settings=settings) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert (shown["phase"], shown["resolved_by"], shown["flag_reason"]) == (
        "resolved",
        "bob",
        "amount_mismatch",
    )
    assert shown["operator_action"].startswith("resolve by bob at ")

    skipped = sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify")
    await rig.forge(trade_id, 3)  # a later notify: a resolved trade does not move
    await wait_until(
        lambda: (
            sample(metrics, "pooul_trades_duplicates_skipped_total", signal="notify") >= skipped + 1
        ),
        what="the notify for the resolved trade skipped",
    )
    code = await cli(
        "trade", "resolve", trade_id, "--by", "bob", "--note", "again", "--wait", "1",
        settings=settings,
    )  # fmt: skip
    assert code == 1
    assert "wrote no state for this signal within 1 s" in capsys.readouterr().err
    await wait_until(
        lambda: (
            sample(metrics, OPERATOR, kind="resolve", outcome="not_flagged")
            == before["not_flagged"] + 1
        ),
        what="the second resolve counted as not flagged",
    )
    # A recheck cannot undo the resolution (the buyer may have been refunded by hand).
    refused = sample(metrics, OPERATOR, kind="recheck", outcome="resolved")
    assert await cli("trade", "recheck", trade_id, "--wait", "1", settings=settings) == 1
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="recheck", outcome="resolved") == refused + 1,
        what="the recheck of a resolved trade refused",
    )
    assert sample(metrics, OPERATOR, kind="resolve", outcome="resolved") == before["resolved"] + 1
    await rig.settle()
    assert rig.events_of(trade_id) == []
    assert len(letters_of(rig, trade_id)) == 2


async def test_a_trade_given_up_on_is_published_after_a_recheck(world: World) -> None:
    """The query API did not know a paid trade until after it was given up on: a recheck
    reconciles it and publishes the payment (confirmed by query, once)."""
    rig, metrics = world.rig, world.metrics
    await rig.faults(force_code=301, force_code_endpoints=["query"])
    order = await rig.create_order(total_fee=700, signal=False)
    await rig.pay(order.trade_id)
    await wait_until(
        lambda: any(d.reason == "unconfirmed_expired" for d in letters_of(rig, order.trade_id)),
        what="the trade given up on",
    )
    await rig.clear_faults()
    published = sample(metrics, OPERATOR, kind="recheck", outcome="publish")

    outcome = await act_on_trade(world.settings, recheck(order.trade_id), wait=15)

    assert outcome.record is not None
    assert (outcome.record.phase, outcome.record.published) == (Phase.CONFIRMED, TradeState.PAID)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) >= 1, what="the event")
    await rig.settle()
    [event] = rig.events_of(order.trade_id)
    assert (event.type, event.data.total_fee) == ("com.pooul.payment.succeeded", 700)
    assert event.data.confirmed_by == "reconcile"
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="recheck", outcome="publish") == published + 1,
        what="the recheck counted",
    )


async def test_a_recheck_clears_a_flag_once_the_order_agrees_without_publishing_again(
    world: World,
) -> None:
    """Paid and published before its order signal, then flagged by an order signal with another
    amount (an upstream bug), then that signal corrected: a recheck finds platform, order and
    event in agreement — the trade is confirmed again, the flag cleared, no second event."""
    rig, metrics = world.rig, world.metrics
    order = await rig.create_order(total_fee=800, signal=False)
    await rig.pay(order.trade_id)
    await wait_until(lambda: len(rig.events_of(order.trade_id)) == 1, what="the event")
    expires_at = time.time() + 3600
    wrong = PlacedOrder(order.trade_id, order.mch_trade_id, 799)
    await rig.send_order_created(wrong, expires_at=expires_at)
    await wait_until(lambda: len(letters_of(rig, order.trade_id)) == 1, what="the flag")
    await rig.send_order_created(order, expires_at=expires_at)
    stale = sample(metrics, OPERATOR, kind="recheck", outcome="stale")

    outcome = await act_on_trade(world.settings, recheck(order.trade_id), wait=15)

    assert outcome.record is not None
    assert (outcome.record.phase, outcome.record.published) == (Phase.CONFIRMED, TradeState.PAID)
    assert (outcome.record.flag_reason, outcome.record.expected_fee) == (None, 800)
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="recheck", outcome="stale") == stale + 1,
        what="the recheck counted",
    )
    await rig.settle()
    assert len(rig.events_of(order.trade_id)) == 1
    assert len(letters_of(rig, order.trade_id)) == 1


async def test_a_recheck_during_an_outage_waits_and_changes_nothing_meanwhile(
    world: World,
) -> None:
    """Pooul answering 500: the recheck is retried behind the breaker, the trade stays flagged
    (no dead letter, no state change); once Pooul is back it is handled."""
    rig, metrics = world.rig, world.metrics
    trade_id = await flagged_trade(rig)
    flagged_again = sample(metrics, OPERATOR, kind="recheck", outcome="flag")
    await rig.faults(error_500_rate=1.0)

    outcome = await act_on_trade(world.settings, recheck(trade_id), wait=1.0)

    assert outcome.record is None
    assert sample(metrics, OPERATOR, kind="recheck", outcome="flag") == flagged_again
    assert len(letters_of(rig, trade_id)) == 1
    await rig.clear_faults()
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="recheck", outcome="flag") == flagged_again + 1,
        what="the recheck handled once Pooul is back",
    )
    await wait_until(lambda: len(letters_of(rig, trade_id)) == 2, what="the second dead letter")
    assert rig.events_of(trade_id) == []


async def test_operator_signals_for_an_unknown_trade_change_nothing(world: World) -> None:
    """No entry means no merchant to query as: counted and logged, nothing written."""
    metrics = world.metrics
    unknown = f"T{uuid.uuid4().hex[:16]}"
    before = sample(metrics, OPERATOR, kind="recheck", outcome="unknown_trade")
    outcome = await act_on_trade(world.settings, recheck(unknown), wait=1.0)
    assert outcome.record is None
    resolve = ResolveSignal(
        trade_id=unknown, requested_by="bob", requested_at=datetime.now(UTC), note="n"
    )
    assert (await act_on_trade(world.settings, resolve, wait=1.0)).record is None
    assert await cli("trade", "show", unknown, settings=world.settings) == 1
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="recheck", outcome="unknown_trade") == before + 1,
        what="the recheck counted",
    )
    await wait_until(
        lambda: sample(metrics, OPERATOR, kind="resolve", outcome="unknown_trade") >= 1,
        what="the resolve counted",
    )


def test_resolve_needs_who_and_what() -> None:
    """Resolve without --by or --note is refused by the parser (the audit trail is mandatory)."""
    parser = build_parser()
    for argv in (
        ["trade", "resolve", "T1", "--note", "n"],
        ["trade", "resolve", "T1", "--by", "b"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2
