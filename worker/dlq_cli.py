"""`pooul-worker dlq list|replay`: inspect and replay the dead-letter topic."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC
from typing import Any, TextIO

from worker.cli_types import positive_int
from worker.dlq import (
    DeadLetterRow,
    ReplayProgress,
    list_dead_letters,
    replay_dead_letters,
)
from worker.settings import Settings

__all__ = ["ProgressBar", "register", "render_rows"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dlq", help="list or replay dead letters")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="show the dead letters on POOUL_TOPIC_DEAD_LETTERS",
        description="One line per dead letter: position on the dead-letter topic, reason, "
        "source topic/partition/offset, attempts, key and time. Read-only.",
    )
    listing.add_argument("--reason", help="only dead letters with this reason")
    listing.add_argument("--limit", type=positive_int, help="only the newest N")
    listing.set_defaults(run=_list)
    replay = actions.add_parser(
        "replay",
        help="write dead letters back to their source topic (or --to)",
        description="Replays record dead letters with their original key, value and headers "
        "plus a pooul-replayed-from header, and commits POOUL_DLQ_GROUP_ID (one cursor per "
        "--reason) so the next replay starts where this one ended. Timer dead letters are "
        "never replayed.",
    )
    replay.add_argument("--to", metavar="TOPIC", help="target topic (default: each source topic)")
    replay.add_argument("--reason", help="only dead letters with this reason")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.add_argument(
        "--from-beginning",
        action="store_true",
        help="ignore the committed position and replay everything on the topic",
    )
    replay.add_argument("--group", help="consumer group keeping the position (advanced)")
    replay.set_defaults(run=_replay)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_rows(rows: list[DeadLetterRow]) -> str:
    """The `dlq list` table."""
    header = (
        f"{'position':>10}  {'reason':20} {'source':40} {'attempts':>8}  {'key':24} "
        f"{'failed at (UTC)':19}"
    )
    lines = [header]
    for row in rows:
        letter = row.letter
        if letter is None:
            lines.append(f"{row.position:>10}  {'(unparseable)':20} {_short(row.error, 80)}")
            continue
        offset = "timer" if letter.source_offset is None else str(letter.source_offset)
        source = f"{letter.source_topic}/{letter.source_partition}/{offset}"
        key = "" if letter.key is None else letter.key.data
        lines.append(
            f"{row.position:>10}  {_short(letter.reason, 20):20} {_short(source, 40):40} "
            f"{letter.attempts:>8}  {_short(key, 24):24} "
            f"{letter.failed_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}"
        )
    lines.append(f"{len(rows)} dead letter(s)")
    return "\n".join(lines)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        rows = asyncio.run(list_dead_letters(settings, reason=args.reason, limit=args.limit))
    except LookupError as exc:
        print(f"pooul-worker dlq: {exc}", file=sys.stderr)
        return 1
    print(render_rows(rows))
    return 0


class ProgressBar:
    """A progress bar on stderr for long replays: redrawn in place on a terminal, a line every
    few seconds otherwise; silent for short runs (under `min_total` letters)."""

    def __init__(self, *, stream: TextIO | None = None, min_total: int = 200) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._min_total = min_total
        self._last = 0.0
        self._drawn = False

    def __call__(self, progress: ReplayProgress) -> None:
        if progress.total < self._min_total:
            return
        now = time.monotonic()
        finished = progress.scanned >= progress.total
        if not finished and now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        width = 30
        filled = width * progress.scanned // max(1, progress.total)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {progress.scanned}/{progress.total} "
            f"dead letters read, {progress.replayed} replayed"
        )
        self._stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self._drawn = True
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    bar = ProgressBar()
    try:
        outcome = asyncio.run(
            replay_dead_letters(
                settings,
                to=args.to,
                reason=args.reason,
                dry_run=args.dry_run,
                from_beginning=args.from_beginning,
                group=args.group,
                progress=bar,
            )
        )
    except (LookupError, ValueError) as exc:
        print(f"pooul-worker dlq: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    verb = "would replay" if outcome.dry_run else "replayed"
    for position, target in outcome.replayed if outcome.dry_run else ():
        print(f"{verb} {position} -> {target}")
    targets: dict[str, int] = {}
    for _, target in outcome.replayed:
        targets[target] = targets.get(target, 0) + 1
    summary = ", ".join(f"{count} to {target}" for target, count in sorted(targets.items()))
    print(
        f"{verb} {len(outcome.replayed)} dead letter(s)"
        + (f" ({summary})" if summary else "")
        + f"; read {outcome.scanned}, other reasons {outcome.filtered_out}, "
        f"timers skipped {outcome.timers_skipped}, "
        f"too large to carry (see their source) {outcome.omitted_skipped}, "
        f"unparseable {outcome.unparseable}; "
        f"group {outcome.group}"
        + (" (dry run: nothing written or committed)" if outcome.dry_run else "")
    )
    return 0
