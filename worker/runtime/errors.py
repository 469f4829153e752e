"""What a handler raises to steer the runtime, and what the runtime raises on misuse.

    raise Retry("query_timeout")                      # try this record again later
    raise Retry("rate_limited", delay=2.0)            # ... not before 2 s
    raise RemoteUnavailable("pooul_unavailable: 502") # the remote is down: feeds the circuit breaker
    raise RemoteRefused("http_refused: 403")          # the remote refused this call: both
    raise Permanent("invalid_signal", "no trade_id")  # never going to work: dead-letter it

Any other exception from a handler counts like `Retry` and is dead-lettered with reason `error`
once the attempts are used up. The retryable/permanent split is a property of the type
(`retryable`), never of message text.

```
StreamError                     root of everything below
├── Retry(reason, delay=None)   retryable: backoff + jitter, the key stays blocked, others flow
│   ├── RemoteUnavailable       retryable: the remote API is down; counts towards the circuit
│   │                           breaker and never exhausts a record into the dead-letter topic
│   └── RemoteRefused           retryable and counted like Retry, and a breaker failure: the
│                               remote refused this call (its content, or every call)
├── Permanent(reason, detail)   not retryable: dead-letter topic with the reason, partition moves on
└── UsageError                  the runtime is used wrongly (start() twice, state without a topic)
```
"""

from __future__ import annotations

__all__ = ["Permanent", "RemoteRefused", "RemoteUnavailable", "Retry", "StreamError", "UsageError"]


class StreamError(Exception):
    """Root of the stream runtime's exceptions."""

    retryable: bool = False


class Retry(StreamError):
    """Try the record again later; `delay` (seconds) overrides the computed backoff."""

    retryable = True

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0")
        self.reason = reason
        self.delay = delay


class RemoteUnavailable(Retry):
    """The remote dependency is down (connection refused, 5xx, timeout): not this record's fault."""


class RemoteRefused(Retry):
    """The remote (or something on the way to it: a proxy, a firewall) refused this call. It may
    be this record's content — then waiting behind the breaker would hold the key for good, so
    the attempts are counted — or every call (an allowlist, a WAF) — so it is also a breaker
    failure: the successes of other records reset the breaker's count, and only a refusal of
    everything opens it."""


class Permanent(StreamError):
    """The record can never be processed: it goes to the dead-letter topic with this reason."""

    retryable = False

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class UsageError(StreamError):
    """The runtime was used in a way it does not support (a bug in the caller, not in the data)."""
