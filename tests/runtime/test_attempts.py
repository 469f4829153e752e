"""Classification of handler outcomes into ok / retry / dead and breaker signals."""

from __future__ import annotations

from worker.runtime.attempts import judge
from worker.runtime.errors import Permanent, RemoteRefused, RemoteUnavailable, Retry


def test_success_is_ok_and_tells_the_breaker_the_remote_works() -> None:
    """A handler that returned is done and counts as a remote success."""
    verdict = judge(None, counted_failures=0, max_attempts=3)
    assert (verdict.kind, verdict.breaker) == ("ok", "success")


def test_remote_unavailable_never_exhausts() -> None:
    """RemoteUnavailable stays a retry however often it happened, and is a breaker failure."""
    verdict = judge(RemoteUnavailable("down", delay=1.5), counted_failures=99, max_attempts=3)
    assert (verdict.kind, verdict.breaker, verdict.counted) == ("retry", "failure", False)
    assert verdict.delay == 1.5 and verdict.retry_kind == "remote_unavailable"


def test_retry_is_counted_until_the_attempts_are_used_up() -> None:
    """Retry retries while attempts remain, then dead-letters as retries_exhausted with its reason."""
    assert judge(Retry("later"), counted_failures=1, max_attempts=3).kind == "retry"
    verdict = judge(Retry("later"), counted_failures=2, max_attempts=3)
    assert (verdict.kind, verdict.outcome, verdict.reason) == ("dead", "retries_exhausted", "later")
    assert verdict.breaker == "success"


def test_permanent_is_dead_at_once() -> None:
    """Permanent dead-letters on the first attempt with the handler's reason and detail."""
    verdict = judge(Permanent("invalid_signal", "no trade_id"), counted_failures=0, max_attempts=5)
    assert (verdict.kind, verdict.outcome, verdict.reason, verdict.detail) == (
        "dead",
        "permanent",
        "invalid_signal",
        "no trade_id",
    )


def test_unexpected_exceptions_are_errors_neutral_to_the_breaker() -> None:
    """A bug is retried like Retry, dead-lettered with reason `error`, and says nothing about the remote."""
    retry = judge(KeyError("x"), counted_failures=0, max_attempts=2)
    assert (retry.kind, retry.breaker, retry.retry_kind) == ("retry", "neutral", "error")
    dead = judge(KeyError("x"), counted_failures=1, max_attempts=2)
    assert (dead.kind, dead.reason) == ("dead", "error") and "KeyError" in dead.detail


def test_remote_refused_is_counted_and_a_breaker_failure() -> None:
    """A refusal uses up attempts like Retry (one record's content may be what is refused)
    and tells the breaker of a failure (a refusal of every call is an outage for us)."""
    retry = judge(RemoteRefused("http_refused"), counted_failures=0, max_attempts=3)
    assert (retry.kind, retry.breaker, retry.counted) == ("retry", "failure", True)
    dead = judge(RemoteRefused("http_refused"), counted_failures=2, max_attempts=3)
    assert (dead.kind, dead.breaker, dead.outcome) == ("dead", "failure", "retries_exhausted")
