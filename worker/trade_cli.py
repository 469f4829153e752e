"""`pooul-worker trade list|show|recheck|resolve`: the trades that wait for a human, and acting
on one of them.

A flagged trade (the platform contradicted the order: amount, merchant, mch_trade_id) is never
published and is kept until someone acts:

    pooul-worker trade list                        # flagged trades (--phase for others)
    pooul-worker trade show P1234                  # one trade's state
    pooul-worker trade recheck P1234 --note "platform fixed its amount"   # query again, same rules
    pooul-worker trade resolve P1234 --by alice --note "refunded offline, ticket 42"

`list` and `show` read the trades worker's state changelog (read-only). The two actions, neither
of which can publish anything the usual rules would not, print where the signal was written and
the trade's state once the trades worker handled it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.signals import OperatorSignal, RecheckSignal, ResolveSignal
from worker.cli_types import positive_int
from worker.settings import Settings
from worker.trades.state import Phase, TradeRecord

if TYPE_CHECKING:
    from worker.trades.lookup import Lookup

__all__ = ["describe", "register", "render_trades"]

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
        help="the trades that wait for a human: list, show, recheck, resolve",
        description="list/show read POOUL_TOPIC_TRADE_STATE (read-only); recheck/resolve write "
        "an operator signal to POOUL_TOPIC_TRADE_SIGNALS (key = the trade id) and show the "
        "trade's state once the trades worker handled it. See "
        "docs/trades.md#when-a-trade-needs-a-human.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="the trades in one phase (default: flagged, i.e. waiting for a human)",
        description="Reads POOUL_TOPIC_TRADE_STATE from the beginning (read-only, no consumer "
        "group): one line per trade whose latest state is in --phase, oldest change first.",
    )
    listing.add_argument(
        "--phase", choices=[phase.value for phase in Phase], default=Phase.FLAGGED.value
    )
    listing.add_argument("--limit", type=positive_int, metavar="N", help="only the N most recent")
    _timeout(listing)
    listing.set_defaults(run=_list)
    show = actions.add_parser(
        "show",
        help="one trade's state as the trades worker keeps it",
        description="Reads the trade's partition of POOUL_TOPIC_TRADE_STATE (read-only).",
    )
    show.add_argument("trade_id", metavar="TRADE_ID", help="Pooul's order id (trade_id)")
    show.add_argument("--json", action="store_true", help="the whole stored record as JSON")
    _timeout(show)
    show.set_defaults(run=_show)
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


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="give up reading after this long (default 120)",
    )


def _lookup(args: argparse.Namespace, settings: Settings, **query: Any) -> Lookup | None:
    from worker.trades.lookup import find_trades

    try:
        found = asyncio.run(asyncio.wait_for(find_trades(settings, **query), args.timeout))
    except (KafkaError, LookupError) as exc:
        print(f"pooul-worker trade: {exc}", file=sys.stderr)
        return None
    except TimeoutError:
        print(f"pooul-worker trade: not read within {args.timeout:g} s", file=sys.stderr)
        return None
    if found.unreadable:
        print(
            f"pooul-worker trade: {found.unreadable} trade(s) whose latest entry this release "
            "cannot read were skipped (written by another release?)",
            file=sys.stderr,
        )
    return found


def _list(args: argparse.Namespace, settings: Settings) -> int:
    found = _lookup(args, settings, phase=Phase(args.phase))
    if found is None:
        return 1
    trades = found.trades[-args.limit :] if args.limit else found.trades
    if trades:
        print(render_trades(trades))
    shown = f", {len(trades)} shown" if len(trades) < len(found.trades) else ""
    print(f"{len(found.trades)} trade(s) {args.phase}{shown}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    found = _lookup(args, settings, trade_id=args.trade_id)
    if found is None:
        return 1
    if not found.trades:
        print(
            f"pooul-worker trade: no state for trade {args.trade_id} (never seen, or dropped "
            "after its retention)",
            file=sys.stderr,
        )
        return 1
    [record] = found.trades
    if args.json:
        print(orjson.dumps(record.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(describe(record))
    return 0


def render_trades(trades: list[TradeRecord]) -> str:
    """A table of trades, one line each."""
    header = ("trade_id", "merchant_id", "mch_trade_id", "phase", "reason", "fen", "updated (UTC)")
    rows = [header] + [
        (
            record.trade_id,
            record.merchant_id,
            record.mch_trade_id or "-",
            record.phase.value,
            record.flag_reason or "-",
            f"{_fen(record.expected_fee)}/{_fen(record.total_fee)}",
            datetime.fromtimestamp(record.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
        for record in trades
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _fen(value: int | None) -> str:
    return "?" if value is None else str(value)


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
    from worker.trades.operator import act_on_trade

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


def describe(record: TradeRecord) -> str:
    """One line about a trade's state, for an operator."""
    parts = [f"trade {record.trade_id}: {record.phase.value}"]
    if record.phase is Phase.FLAGGED:
        parts.append(f"({record.flag_reason})")
    if record.phase is Phase.RESOLVED:
        parts.append(f"by {record.resolved_by}: {record.resolution}")
    if record.published is not None:
        parts.append(f"— published {record.published.label} (trade_state {int(record.published)})")
    elif record.state is not None:
        parts.append(f"— platform says {record.state.label} (trade_state {int(record.state)})")
    if record.next_check_at is not None:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.next_check_at))
        parts.append(f"— next check at {at}")
    return " ".join(parts)
