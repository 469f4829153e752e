"""Retry delays: exponential with "equal jitter" (half fixed, half random).

The fixed half guarantees a real pause; the random half spreads a burst of retries (every
trade hit by the same Pooul hiccup) so they do not return in lockstep.

    backoff_delay(1, base=0.5, maximum=30, rng=rng)   # 0.25 .. 0.5
    backoff_delay(4, base=0.5, maximum=30, rng=rng)   # 2.0 .. 4.0
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, *, base: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    ceiling = min(maximum, base * 2.0 ** min(max(attempt, 1) - 1, 62))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)
