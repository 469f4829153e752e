"""What `pooul-worker dev` prints: a live progress line while the demo runs, then a summary table.

On a terminal the progress line rewrites itself in place; into a pipe or file it becomes one line
per second, so logs and CI output stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from worker.dev.demo import SUCCEEDED, DemoReport

__all__ = ["Progress", "render_summary"]


class Progress:
    """Callable progress display for `run_demo` (stderr by default)."""

    def __init__(self, *, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = 0.1 if self._tty else interval
        self._last = 0.0
        self._width = 0
        self._shown = ""

    def __call__(self, report: DemoReport) -> None:
        now = time.monotonic()
        if now - self._last < self._interval and not report.done:
            return
        line = progress_line(report)
        if line == self._shown:
            return
        self._last, self._shown = now, line
        if self._tty:
            padding = " " * max(0, self._width - len(line))
            self._stream.write(f"\r{line}{padding}")
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = 0 if total == 0 else min(width, done * width // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_line(report: DemoReport) -> str:
    total = len(report.planned)
    expected = len(set(report.created) - set(report.action_errors))
    finals = len(report.final_seen)
    events = sum(len(ids) for ids in report.event_ids.values())
    return (
        f"{_bar(finals, expected or total)} orders {len(report.created)}/{total} created, "
        f"{len(report.paid)} paid, events {events} ({finals}/{expected} orders final) "
        f"{report.elapsed:5.1f}s"
    )


def render_summary(report: DemoReport) -> str:
    """The final table; the last line says whether the acceptance check passed."""
    rows: list[tuple[str, str]] = []
    planned = report.planned
    by_action = {a: sum(1 for p in planned if p.action == a) for a in ("pay", "fail", "expire")}
    rows.append(("orders requested", str(len(planned))))
    rows.append(("orders created", str(len(report.created))))
    for status, count in sorted(report.other_results.items()):
        rows.append((f"orders {status}", str(count)))
    rows.append(
        (
            "buyer: paid (then refunded) / failed / left to expire",
            f"{len(report.paid)} ({len(report.refunded)})"
            f" / {sum(1 for a in report.acted.values() if a == 'fail')} / {by_action['expire']}",
        )
    )
    for merchant, role in report.merchants.items():
        count = sum(1 for p in planned if p.merchant_id == merchant)
        rows.append((f"merchant {merchant} ({role})", f"{count} orders"))
    rows.append(("payment events by type", "records / distinct ids"))
    for event_type in sorted(report.event_records):
        rows.append(
            (
                f"  {event_type}",
                f"{report.event_records[event_type]} / {len(report.event_ids[event_type])}",
            )
        )
    skipped = "n/a" if report.duplicates_skipped is None else str(report.duplicates_skipped)
    rows.append(("duplicates skipped (trades worker)", skipped))
    rows.append(("reconciled trades (no notify needed)", str(len(report.reconciled))))
    rows.append(
        (
            f"paid orders with exactly one {SUCCEEDED.rsplit('.', 1)[-1]} event",
            f"{report.paid_exactly_once} / {len(report.paid)}",
        )
    )
    if report.unexpected_succeeded:
        rows.append(("unpaid orders with a succeeded event", str(len(report.unexpected_succeeded))))
    missing = set(report.created) - set(report.action_errors) - report.final_seen
    if missing:
        rows.append(("orders without their final event", str(len(missing))))
    for mch_trade_id, error in sorted(report.action_errors.items())[:5]:
        rows.append((f"buyer error {mch_trade_id}", error))
    rows.append(("elapsed", f"{report.elapsed:.1f} s"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    rule = "-" * (width + 2 + max(len(value) for _, value in rows))
    verdict = (
        "OK: every paid order has exactly one succeeded event"
        if report.ok
        else "FAILED: paid orders and succeeded events do not match"
        + (" (timed out waiting for events)" if report.timed_out else "")
    )
    return "\n".join([rule, *lines, rule, verdict])
