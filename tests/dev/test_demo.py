"""The demo's plan, its acceptance check and its summary table (pure parts)."""

from __future__ import annotations

import re
from collections import Counter

from worker.dev.demo import SUCCEEDED, DemoReport, plan_orders
from worker.dev.display import progress_line, render_summary

_MERCHANTS = ("m-plain", "m-lossy", "m-dupes")


def test_plan_mixes_outcomes_and_merchants_reproducibly() -> None:
    """50 orders: mostly paid, some failed and expiring, a tenth each for lost/duplicated notifies."""
    plan = plan_orders(50, merchants=_MERCHANTS, run_id="abc", seed=7)
    assert plan == plan_orders(50, merchants=_MERCHANTS, run_id="abc", seed=7)
    actions = Counter(p.action for p in plan)
    assert actions == {"pay": 35, "refund": 2, "fail": 5, "expire": 8}
    # Refunds only where notifies arrive: a confirmed trade is not reconciled again.
    assert all(p.merchant_id != "m-lossy" for p in plan if p.action == "refund")
    owners = Counter(p.merchant_id for p in plan)
    assert owners == {"m-plain": 40, "m-lossy": 5, "m-dupes": 5}
    assert len({p.mch_trade_id for p in plan}) == 50
    assert all(len(p.mch_trade_id) <= 32 and p.total_fee > 0 for p in plan)
    assert [p.action for p in plan_orders(1, merchants=_MERCHANTS, run_id="x", seed=1)] == ["pay"]


def _report() -> DemoReport:
    plan = plan_orders(10, merchants=_MERCHANTS, run_id="r", seed=3)
    report = DemoReport(planned=plan, merchants=dict.fromkeys(_MERCHANTS, "role"))
    for order in plan:
        report.created[order.mch_trade_id] = f"T-{order.mch_trade_id}"
        if order.action != "expire":
            report.acted[order.mch_trade_id] = order.action
    return report


def test_ok_needs_exactly_one_distinct_succeeded_id_per_paid_order() -> None:
    """Duplicates of one id pass; a missing, a second distinct or an unpaid succeeded event fails."""
    report = _report()
    paid = report.paid
    assert paid and not report.ok
    for mch_trade_id in paid:
        report.succeeded_ids[mch_trade_id] = {f"id-{mch_trade_id}"}
        report.event_records[SUCCEEDED] += 2  # the same event seen twice still counts once
    assert report.ok

    report.succeeded_ids[paid[0]].add("another-id")
    assert not report.ok
    report.succeeded_ids[paid[0]] = {f"id-{paid[0]}"}
    unpaid = next(m for m, a in report.acted.items() if a == "fail")
    report.succeeded_ids[unpaid] = {"id-x"}
    assert not report.ok and report.unexpected_succeeded == [unpaid]


def test_done_waits_for_every_final_event_except_failed_buyer_actions() -> None:
    """The demo waits for each created order's final event and buyer call, not for orders the
    buyer could not touch."""
    report = _report()
    assert not report.done
    *finals, last = report.created
    report.final_seen.update(finals)
    assert not report.done
    report.action_errors[last] = "pay: order expired"
    assert report.done
    # An event may arrive before the buyer's HTTP call returned: wait for the call too.
    paid = report.paid[0]
    del report.acted[paid]
    assert not report.done


def test_summary_lists_counts_and_the_verdict() -> None:
    """The summary table shows orders, events by type with distinct ids, and the verdict."""
    report = _report()
    for mch_trade_id in report.paid:
        report.succeeded_ids[mch_trade_id] = {f"id-{mch_trade_id}"}
        report.event_ids.setdefault(SUCCEEDED, set()).add(f"id-{mch_trade_id}")
        report.event_records[SUCCEEDED] += 1
    report.duplicates_skipped = 4
    text = render_summary(report)
    assert "orders created" in text and f"{SUCCEEDED}" in text
    assert re.search(r"duplicates skipped \(trades worker\)\s+4\n", text)
    assert text.splitlines()[-1].startswith("OK")
    assert "orders 10/10 created" in progress_line(report)
    report.succeeded_ids.clear()
    assert render_summary(report).splitlines()[-1].startswith("FAILED")
