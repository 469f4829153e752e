"""How one handler attempt ended, decided from what it raised (pure, no I/O).

    verdict = judge(error, counted_failures=0, max_attempts=5)
    verdict.kind        # "ok" | "retry" | "dead"
    verdict.breaker     # what it tells the circuit breaker: "success" | "failure" | "neutral"

- returned → ok (the remote answered: success for the breaker)
- RemoteUnavailable → retry, not counted against the attempts, breaker failure
- Permanent → dead (outcome permanent), breaker success (the remote answered)
- Retry → retry (counted); dead with outcome retries_exhausted once the attempts are used up
- RemoteRefused → like Retry, but a breaker failure (the remote refused the call)
- any other exception → like Retry with reason "error"; neutral for the breaker (a bug says
  nothing about the remote)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.runtime.errors import Permanent, RemoteRefused, RemoteUnavailable, Retry

__all__ = ["Verdict", "is_last_attempt", "judge"]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["ok", "retry", "dead"]
    breaker: Literal["success", "failure", "neutral"]
    reason: str = ""
    detail: str = ""
    delay: float | None = None  # a Retry's own delay, overriding the computed backoff
    counted: bool = True  # counts against POOUL_MAX_ATTEMPTS
    outcome: Literal["permanent", "retries_exhausted"] = "permanent"
    retry_kind: Literal["retry", "remote_unavailable", "error"] = "retry"


_OK = Verdict("ok", "success")


def is_last_attempt(counted_failures: int, max_attempts: int) -> bool:
    """Whether an attempt after `counted_failures` counted failures is the item's last one
    (outage attempts are not counted): the rule the runtime dead-letters by, and the one a
    handler that gives up by itself must use."""
    return counted_failures + 1 >= max_attempts


def judge(error: BaseException | None, *, counted_failures: int, max_attempts: int) -> Verdict:
    """Classify an attempt; `counted_failures` are the earlier counted failures of the item."""
    if error is None:
        return _OK
    if isinstance(error, RemoteUnavailable):
        return Verdict(
            "retry",
            "failure",
            reason=error.reason,
            detail=str(error),
            delay=error.delay,
            counted=False,
            retry_kind="remote_unavailable",
        )
    if isinstance(error, Permanent):
        return Verdict("dead", "success", reason=error.reason, detail=error.detail)
    if isinstance(error, Retry):
        reason, detail, delay = error.reason, str(error), error.delay
        breaker: Literal["success", "failure", "neutral"] = (
            "failure" if isinstance(error, RemoteRefused) else "success"
        )
        retry_kind: Literal["retry", "error"] = "retry"
    else:
        reason, detail, delay = "error", f"{type(error).__name__}: {error}", None
        breaker, retry_kind = "neutral", "error"
    if is_last_attempt(counted_failures, max_attempts):
        return Verdict(
            "dead",
            breaker,
            reason=reason,
            detail=f"gave up after {counted_failures + 1} counted attempts; last: {detail}",
            outcome="retries_exhausted",
        )
    return Verdict(
        "retry", breaker, reason=reason, detail=detail, delay=delay, retry_kind=retry_kind
    )
