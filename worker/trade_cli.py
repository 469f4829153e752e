"""`pooul-worker trade recheck|resolve TRADE_ID`: act on one trade that waits for a human.

A flagged trade (the platform contradicted the order: amount, merchant, mch_trade_id) is never
published and is kept until someone acts. Two actions, neither of which can publish anything
the usual rules would not:

    pooul-worker trade recheck P1234 --note "platform fixed its amount"   # query again, same rules
    pooul-worker trade resolve P1234 --by alice --note "refunded offline, ticket 42"

Both print where the signal was written and the trade's state once the trades worker handled it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.signals import OperatorSignal, RecheckSignal, ResolveSignal
from worker.settings import Settings

__all__ = ["register"]

_NO_CHANGE = (
    "the trades worker wrote no state for this signal within {wait:g} s. It writes none for a "
    "trade it does not know, a resolve of a trade not flagged, a recheck of a resolved trade or "
    "of a merchant contradiction (resolve those by hand), or a trade the platform does not know; "
    'an outage of Pooul holds a recheck until Pooul is back. Its log line "operator signal" '
    "and pooul_trades_operator_signals_total{{kind,outcome}} say which. Is the worker running?"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trade",
        help="act on one trade: recheck it, or resolve a flagged one",
        description="Writes an operator signal to POOUL_TOPIC_TRADE_SIGNALS (key = the trade "
        "id) and shows the trade's state once the trades worker handled it. See "
        "docs/trades.md#when-a-trade-needs-a-human.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    recheck = actions.add_parser(
        "recheck",
        help="query the trade again and apply the usual rules (a flagged trade, one given up on)",
        description="A flagged trade is published only if the platform's answer no longer "
        "contradicts the order; otherwise it is flagged and dead-lettered again. A trade given "
        "up on is published if the answer is final, else given up on again. Refused for a "
        "resolved trade and for a merchant contradiction (a query cannot settle it).",
    )
    _common(recheck, by_required=False)
    recheck.add_argument("--note", help="why (kept in the signal and the worker's log)")
    recheck.set_defaults(run=_recheck)
    resolve = actions.add_parser(
        "resolve",
        help="mark a flagged trade settled outside the service (nothing is published)",
        description="The trade leaves `flagged` for `resolved`: kept for good, later notifies "
        "and rechecks skipped, no event. Use when the contradiction was handled by hand "
        "(refund, correction).",
    )
    _common(resolve, by_required=True)
    resolve.add_argument("--note", required=True, help="what was done, for the audit trail")
    resolve.set_defaults(run=_resolve)


def _common(parser: argparse.ArgumentParser, *, by_required: bool) -> None:
    parser.add_argument("trade_id", metavar="TRADE_ID", help="Pooul's order id (trade_id)")
    parser.add_argument(
        "--by",
        required=by_required,
        help="who is acting, for the audit trail" + ("" if by_required else " (default: $USER)"),
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for the worker's answer (0: just write the signal; default 15)",
    )


def _recheck(args: argparse.Namespace, settings: Settings) -> int:
    return _act(
        args,
        settings,
        lambda now: RecheckSignal(
            trade_id=args.trade_id,
            requested_by=args.by or _user(),
            requested_at=now,
            note=args.note,
        ),
    )


def _resolve(args: argparse.Namespace, settings: Settings) -> int:
    return _act(
        args,
        settings,
        lambda now: ResolveSignal(
            trade_id=args.trade_id, requested_by=args.by, requested_at=now, note=args.note
        ),
    )


def _act(
    args: argparse.Namespace, settings: Settings, build: Callable[[datetime], OperatorSignal]
) -> int:
    from worker.trades.operator import act_on_trade, describe

    try:
        signal = build(datetime.now(UTC))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"pooul-worker trade: {problems}", file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(act_on_trade(settings, signal, wait=max(0.0, args.wait)))
    except (KafkaError, LookupError) as exc:
        print(f"pooul-worker trade: {exc}", file=sys.stderr)
        return 1
    topic = settings.pooul_topic_trade_signals
    print(
        f"{signal.kind} of trade {signal.trade_id} by {signal.requested_by} written to "
        f"{topic} [{outcome.partition}] @ {outcome.offset}"
    )
    if args.wait <= 0:
        return 0
    if outcome.record is None:
        print(_NO_CHANGE.format(wait=args.wait), file=sys.stderr)
        return 1
    print(describe(outcome.record))
    return 0


def _user() -> str:
    try:
        return getpass.getuser()[:64] or "operator"
    except (KeyError, OSError):  # no such user in a bare container
        return "operator"
