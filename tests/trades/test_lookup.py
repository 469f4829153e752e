"""`trade list|show`'s reading of the state changelog (worker/trades/lookup.py), on a real broker."""

from __future__ import annotations

import time

from tests.fixtures.broker import base_settings
from worker.ingress.partitioner import partition_for
from worker.kafka import make_producer
from worker.runtime.state import StateEntry, encode_entry
from worker.topics import create_topics
from worker.trades.lookup import find_trades
from worker.trades.state import Phase, TradeRecord

NOW = time.time()


def entry(trade_id: str, phase: Phase, *, expires_at: float | None = None) -> bytes:
    record = TradeRecord(
        trade_id=trade_id, merchant_id="888", first_seen=NOW, updated_at=NOW, phase=phase
    )
    return encode_entry(StateEntry(record.to_json(), None, expires_at))


async def test_the_latest_readable_unexpired_entry_of_each_trade_counts(kafka_bootstrap) -> None:
    """Last entry wins: a tombstone, an expired entry or a later phase removes a trade from the
    list; an unreadable entry followed by a readable one is not counted as unreadable."""
    settings = base_settings(kafka_bootstrap)
    await create_topics(settings)
    unreadable = b'{"v": {"not": "a trade"}, "wake_at": null, "expires_at": null}'
    writes: list[tuple[str, bytes | None]] = [
        ("kept", entry("kept", Phase.FLAGGED)),
        ("dropped", entry("dropped", Phase.FLAGGED)),
        ("dropped", None),
        ("expired", entry("expired", Phase.FLAGGED, expires_at=NOW - 1)),
        ("moved-on", entry("moved-on", Phase.FLAGGED)),
        ("moved-on", entry("moved-on", Phase.RESOLVED)),
        ("repaired", unreadable),
        ("repaired", entry("repaired", Phase.FLAGGED)),
        ("broken", entry("broken", Phase.FLAGGED)),
        ("broken", unreadable),
    ]
    producer = make_producer(settings)
    await producer.start()
    try:
        partitions = await producer.partitions_for(settings.pooul_topic_trade_state)
        for trade_id, value in writes:
            await producer.send_and_wait(
                settings.pooul_topic_trade_state,
                value,
                key=trade_id.encode(),
                partition=partition_for(trade_id.encode(), partitions),
            )
    finally:
        await producer.stop()

    flagged = await find_trades(settings, phase=Phase.FLAGGED)
    assert sorted(r.trade_id for r in flagged.trades) == ["kept", "repaired"]
    assert flagged.unreadable == 1
    resolved = await find_trades(settings, phase=Phase.RESOLVED)
    assert [r.trade_id for r in resolved.trades] == ["moved-on"]
    [one] = (await find_trades(settings, trade_id="moved-on")).trades
    assert one.phase is Phase.RESOLVED
    assert (await find_trades(settings, trade_id="dropped")).trades == []
    assert (await find_trades(settings, trade_id="expired")).trades == []
