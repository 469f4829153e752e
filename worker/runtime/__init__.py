"""The stream runtime both workers run on: key-ordered concurrent Kafka consumption with safe
commits, retries, dead letters, changelog-backed keyed state, timers, a circuit breaker for
remote outages and honest health. See docs/runtime.md.

    from worker.runtime import Record, KeyContext, Handler, StreamProcessor, Retry, RemoteUnavailable, Permanent
"""

from worker.runtime.attempts import is_last_attempt
from worker.runtime.breaker import CircuitBreaker, CircuitState
from worker.runtime.context import Handler, KeyContext
from worker.runtime.errors import (
    Permanent,
    RemoteRefused,
    RemoteUnavailable,
    Retry,
    StreamError,
    UsageError,
)
from worker.runtime.health import HealthServer, run_worker
from worker.runtime.processor import StreamProcessor
from worker.runtime.record import Record
from worker.runtime.state import StateEntry

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "Handler",
    "HealthServer",
    "KeyContext",
    "Permanent",
    "Record",
    "RemoteRefused",
    "RemoteUnavailable",
    "Retry",
    "StateEntry",
    "StreamError",
    "StreamProcessor",
    "UsageError",
    "is_last_attempt",
    "run_worker",
]
