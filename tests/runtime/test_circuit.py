"""A Pooul outage pauses consumption instead of burning retries into the dead-letter topic."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.fixtures.broker import MERCHANT_ID
from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, gid, key_of, produce, read_topic, wait_until
from worker.pooul import PooulClient
from worker.pooul.errors import OrderNotFound, TransportError
from worker.runtime import CircuitState, KeyContext, Record, RemoteUnavailable, StreamProcessor
from worker.sandbox import SandboxServer


class QueryHandler(NoTimers):
    """Queries the sandbox for each trade; an outage becomes RemoteUnavailable."""

    def __init__(self, client: PooulClient) -> None:
        self.client = client
        self.confirmed: set[bytes] = set()

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        try:
            await self.client.query_order(MERCHANT_ID, trade_id=key_of(record).decode())
        except OrderNotFound:
            pass  # the platform answered: that is all this test needs
        except TransportError as exc:
            raise RemoteUnavailable(f"pooul_unavailable: {exc}") from exc
        self.confirmed.add(key_of(record))


async def _gateway_calls(session: aiohttp.ClientSession, sandbox: SandboxServer) -> int:
    async with session.get(f"{sandbox.url}/sandbox/stats") as response:
        stats: dict[str, Any] = await response.json()
    return sum(sum(codes.values()) for codes in stats["calls"].values())


async def test_outage_pauses_and_recovers_without_dead_letters(
    make_runtime_settings: RuntimeSettingsFactory, sandbox: SandboxServer
) -> None:
    """While every query fails: breaker opens, fetching pauses, only probes hit Pooul; then all recover."""
    settings = await make_runtime_settings(
        pooul_base_url=sandbox.url,
        pooul_max_attempts=2,  # were outages counted as attempts, records would dead-letter quickly
        pooul_circuit_failure_threshold=3,
        pooul_max_in_flight=20,
    )
    topic = settings.pooul_topic_trade_signals
    await produce(settings, topic, [(b"T%04d" % i, b"x") for i in range(60)])
    async with aiohttp.ClientSession() as session, PooulClient.from_settings(settings) as client:
        async with session.put(
            f"{sandbox.url}/sandbox/faults", json={"error_500_rate": 1.0}
        ) as response:
            assert response.status == 200
        handler = QueryHandler(client)
        async with StreamProcessor(
            settings=settings, topic=topic, group_id=gid(settings, "cb"), handler=handler, name="cb"
        ) as processor:
            await wait_until(
                lambda: processor.circuit_state is CircuitState.OPEN, what="the breaker to open"
            )
            assert processor._consumer is not None
            assert processor._consumer.paused() == processor._consumer.assignment()
            before = await _gateway_calls(session, sandbox)
            await asyncio.sleep(1.5)
            during = await _gateway_calls(session, sandbox) - before
            # Open 0.3 s then 0.6 s between single probes: a handful of calls, not 20 records' worth.
            assert 1 <= during <= 6, f"{during} calls to a dead Pooul in 1.5 s"
            assert processor.snapshot().in_flight <= 20
            assert handler.confirmed == set()

            async with session.delete(f"{sandbox.url}/sandbox/faults") as response:
                assert response.status == 200
            await wait_until(
                lambda: len(handler.confirmed) == 60, what="every record after recovery"
            )
            assert processor.circuit_state is CircuitState.CLOSED
            await wait_until(
                lambda: sum(v or 0 for v in processor.committed_offsets().values()) == 60,
                what="commits",
            )
            remote_retries = processor.registry.get_sample_value(
                "pooul_runtime_retries_total", {"worker": "cb", "kind": "remote_unavailable"}
            )
            assert remote_retries is not None and remote_retries >= 3
    assert await read_topic(settings, settings.pooul_topic_dead_letters) == []
