"""When to look at a trade again: the reconciliation backoff schedule and the expiry rules.

A notify may never come (lost, or the platform gave up after ~3 h), so every pending trade is
queried on a schedule until it is final or expired:

    policy = ReconcilePolicy.from_settings(settings)
    wake_at = policy.next_check_at(trade_id="T1", checks=0, now=now, expires_at=exp)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from worker.settings import Settings

__all__ = ["ReconcilePolicy", "parse_schedule"]


def parse_schedule(text: str) -> tuple[float, ...]:
    """`"60,120,300"` → `(60.0, 120.0, 300.0)`; every delay positive, at least one."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("the reconcile schedule needs at least one delay (seconds, comma list)")
    delays = []
    for part in parts:
        try:
            delay = float(part)
        except ValueError:
            raise ValueError(f"reconcile schedule entry {part!r} is not a number") from None
        if not delay > 0:
            raise ValueError(f"reconcile schedule entry {part!r} must be positive")
        delays.append(delay)
    return tuple(delays)


def _unit_jitter(trade_id: str, checks: int) -> float:
    """A stable number in [-1, 1) per (trade, check): spreads load, yet replays identically."""
    digest = hashlib.blake2b(f"{trade_id}/{checks}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**31 - 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilePolicy:
    """Timing rules of the trades worker.

    - `delays`: seconds before check 1, 2, ... (then `max_interval` for every later check).
    - `max_interval`: the steady interval once the schedule is used up (hourly by default).
    - `jitter`: ± fraction of each delay, stable per trade, so a burst of orders does not become
      a burst of queries every time.
    - `default_ttl`: expiry of trades seen without an order-created signal (no `time_expire`).
    - `close_expired`: close expired unpaid trades this service created, through the close API.
    - `close_grace`: seconds after expiry before closing (a payment may still be in flight).
    - `give_up_after`: seconds after expiry (+ grace) after which an unconfirmed trade that is
      not being closed is no longer queried (dead-lettered as `unconfirmed_expired`).
    - `retention`: how long a trade's entry (its dedup memory) is kept after its last change.
    - `overdue_after`: age beyond which a still-pending trade counts as "pending past the
      platform's notify retry span".
    """

    delays: tuple[float, ...] = (60.0, 120.0, 300.0, 600.0, 1800.0)
    max_interval: float = 3600.0
    jitter: float = 0.1
    default_ttl: float = 7200.0
    close_expired: bool = True
    close_grace: float = 60.0
    give_up_after: float = 86400.0
    retention: float = 7 * 86400.0
    overdue_after: float = 3 * 3600.0 + 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReconcilePolicy:
        """The policy the `POOUL_RECONCILE_*`, `POOUL_CLOSE_*` and retention settings describe."""
        return cls(
            delays=parse_schedule(settings.pooul_reconcile_schedule),
            max_interval=settings.pooul_reconcile_interval_max,
            jitter=settings.pooul_reconcile_jitter,
            default_ttl=settings.pooul_order_default_ttl,
            close_expired=settings.pooul_close_expired,
            close_grace=settings.pooul_close_grace,
            give_up_after=settings.pooul_reconcile_give_up,
            retention=settings.pooul_dedup_retention,
            overdue_after=settings.pooul_trades_overdue_after,
        )

    def delay(self, *, trade_id: str, checks: int) -> float:
        """Seconds between check number `checks` (0-based count done so far) and the next."""
        base = self.delays[checks] if checks < len(self.delays) else self.max_interval
        return max(0.001, base * (1.0 + self.jitter * _unit_jitter(trade_id, checks)))

    def close_at(self, expires_at: float) -> float:
        """When an expired, unpaid trade may be closed."""
        return expires_at + self.close_grace

    def give_up_at(self, expires_at: float) -> float:
        """When a trade that nobody closes stops being queried."""
        return expires_at + self.close_grace + self.give_up_after

    def next_check_at(
        self, *, trade_id: str, checks: int, now: float, expires_at: float | None
    ) -> float:
        """The next check: the schedule's, but never later than the moment the trade may close."""
        wake = now + self.delay(trade_id=trade_id, checks=checks)
        if expires_at is not None and now < self.close_at(expires_at):
            wake = min(wake, self.close_at(expires_at))
        return wake
