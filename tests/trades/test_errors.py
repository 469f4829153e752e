"""How the trades worker turns a failed query or an unreadable entry into the runtime's flow
control: an outage is retried without limit, anything a retry cannot fix is dead-lettered."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from worker.pooul import PooulClient
from worker.pooul.errors import (
    MalformedResponse,
    MerchantKeyMissing,
    PermanentPlatformError,
    PooulError,
    PooulTimeout,
    RequestRefused,
    ResponseSignatureError,
    RetryablePlatformError,
    TransportError,
)
from worker.runtime import Permanent, RemoteRefused, RemoteUnavailable, Retry
from worker.settings import Settings
from worker.trades.handler import TradesHandler, _runtime_error
from worker.trades.metrics import TradesMetrics


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (TransportError("HTTP 502"), RemoteUnavailable, None),
        (PooulTimeout("no answer"), RemoteUnavailable, None),
        (RetryablePlatformError(601, "channel timeout"), Retry, None),
        (ResponseSignatureError("not verified"), Retry, None),
        (MalformedResponse("trade_state 8"), Permanent, "unreadable_answer"),
        (PermanentPlatformError(202, "pay_type"), Permanent, "pooul_code_202"),
        (MerchantKeyMissing("no key"), Permanent, "merchant_key_missing"),
        (RequestRefused("HTTP 403", status=403), RemoteRefused, None),
    ],
)
def test_query_errors_map_to_flow_control(
    error: PooulError, kind: type[Exception], reason: str | None
) -> None:
    """Only an outage is a `RemoteUnavailable` (retried without limit, holding the partition);
    a verified but unreadable answer is permanent for the signal (reconciliation asks again)."""
    mapped = _runtime_error(error)
    assert type(mapped) is kind
    if reason is not None:
        assert isinstance(mapped, Permanent)
        assert mapped.reason == reason


def test_a_refusal_from_a_timer_is_an_outage() -> None:
    """From a timer an HTTP 4xx waits behind the breaker like an outage: counted retries would
    exhaust and drop the timer."""
    mapped = _runtime_error(RequestRefused("HTTP 403", status=403), timer=True)
    assert type(mapped) is RemoteUnavailable


def test_an_unreadable_entry_is_dead_lettered_not_treated_as_absent() -> None:
    """Starting afresh would forget a flag or the order's amount; the signal (or timer) is
    dead-lettered instead, with the reason, for a replay after the fix."""
    settings = Settings(pooul_merchant_keys='{"888": "k"}')
    handler = TradesHandler(
        settings=settings,
        client=PooulClient.from_settings(settings),
        metrics=TradesMetrics(registry=CollectorRegistry()),
    )
    context: Any = SimpleNamespace(state={"v": 99, "phase": "flagged"})
    with pytest.raises(Permanent) as caught:
        handler._load(context)
    assert caught.value.reason == "unreadable_state"
    assert handler._load(SimpleNamespace(state=None)) is None  # type: ignore[arg-type]


async def test_an_unreadable_entry_puts_its_check_off_instead_of_a_timer_dead_letter() -> None:
    """A timer's dead letter cannot be replayed, so a reconciliation check that finds an
    unreadable entry keeps the entry as it is, sets its next check one steady interval later,
    and counts it."""
    settings = Settings(pooul_merchant_keys='{"888": "k"}', pooul_reconcile_interval_max=600.0)
    metrics = TradesMetrics(registry=CollectorRegistry())
    handler = TradesHandler(
        settings=settings,
        client=PooulClient.from_settings(settings),
        metrics=metrics,
        clock=lambda: 1000.0,
    )
    writes: list[tuple[Any, float | None]] = []

    class Context:
        key = b"T1"
        state: ClassVar[dict[str, int]] = {"v": 99}

        async def set_state(self, value: Any, *, wake_at: float | None = None, **_: Any) -> None:
            writes.append((value, wake_at))

    await handler.on_timer(Context())  # type: ignore[arg-type]
    assert writes == [({"v": 99}, 1600.0)]
    assert metrics.registry.get_sample_value("pooul_trades_unreadable_states_total") == 1.0


async def test_a_pending_trade_whose_timer_was_dropped_is_scheduled_again() -> None:
    """The runtime clears a timer whose retries ran out (a timer dead letter), but the stored
    trade still names its next check. The next signal that cannot settle the trade must not
    trust that name: with no timer set, the check is scheduled again — else reconciliation of
    the trade stops until its entry expires. With the timer set, nothing is rewritten."""
    from worker.trades.state import Phase, TradeRecord

    settings = Settings(pooul_merchant_keys='{"888": "k"}')
    handler = TradesHandler(
        settings=settings,
        client=PooulClient.from_settings(settings),
        metrics=TradesMetrics(registry=CollectorRegistry()),
        clock=lambda: 1000.0,
    )
    record = TradeRecord(
        trade_id="T1",
        merchant_id="888",
        first_seen=900.0,
        updated_at=950.0,
        phase=Phase.PENDING,
        next_check_at=960.0,
    )
    writes: list[float | None] = []

    class Context:
        key = b"T1"
        state = record.to_json()
        wake_at: float | None = None

        async def set_state(self, value: Any, *, wake_at: float | None = None, **_: Any) -> None:
            writes.append(wake_at)

    context = Context()
    await handler._ensure_scheduled(record, context)  # type: ignore[arg-type]
    assert len(writes) == 1 and writes[0] is not None and writes[0] > 1000.0
    context.wake_at = 960.0
    await handler._ensure_scheduled(record, context)  # type: ignore[arg-type]
    assert len(writes) == 1
