"""Liveness, readiness and metrics over HTTP, including a consumer that silently stops."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import NoTimers, gid, produce, wait_until
from worker.runtime import HealthServer, KeyContext, Record, StreamProcessor


class Hanger(NoTimers):
    """Hangs on key `hang` until released; counts everything else."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.handled = 0

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        if record.key == b"hang":
            await self.release.wait()
        self.handled += 1


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        body = (
            await response.json()
            if response.content_type == "application/json"
            else await response.text()
        )
        return response.status, body


async def test_ready_after_assignment_and_metrics_exposed(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """/readyz is 503 until partitions are assigned and restored, /metrics has the runtime's series."""
    settings = await make_runtime_settings()
    topic = settings.pooul_topic_trade_signals
    await produce(settings, topic, [(b"k%d" % i, b"x") for i in range(10)], partition=0)
    handler = Hanger()
    processor = StreamProcessor(
        settings=settings,
        topic=topic,
        group_id=gid(settings, "health"),
        handler=handler,
        state_topic=settings.pooul_topic_trade_state,
        name="hw",
    )
    async with (
        aiohttp.ClientSession() as session,
        HealthServer(processor=processor, host="127.0.0.1", port=0) as server,
    ):
        status, body = await _get(session, f"{server.url}/readyz")
        assert status == 503 and body["phase"] == "new"
        async with processor:
            status, body = await _get(session, f"{server.url}/readyz")
            assert status == 503 and not body["assigned"]
            await wait_until(lambda: handler.handled == 10, what="the records")
            await wait_until(lambda: processor.committed_offsets()[0] == 10, what="the commit")
            status, body = await _get(session, f"{server.url}/readyz")
            assert status == 200, body
            status, body = await _get(session, f"{server.url}/healthz")
            assert status == 200 and body["problems"] == []
            status, text = await _get(session, f"{server.url}/metrics")
            assert status == 200
            for series in (
                'pooul_runtime_records_total{outcome="ok",worker="hw"} 10.0',
                'pooul_runtime_in_flight{worker="hw"} 0.0',
                'pooul_runtime_circuit_state{worker="hw"} 0.0',
                'pooul_runtime_oldest_unfinished_age_seconds{partition="0",worker="hw"}',
                'pooul_runtime_commit_lag_records{partition="0",worker="hw"}',
                "pooul_runtime_restore_duration_seconds_count",
                "pooul_runtime_retries_total",
                "pooul_runtime_dead_letters_total",
            ):
                if series.endswith("_total"):  # declared even before the first increment
                    assert f"# TYPE {series} counter" in text, f"{series} missing from /metrics"
                else:
                    assert series in text, f"{series} missing from /metrics"
        status, body = await _get(session, f"{server.url}/readyz")
        assert status == 503 and body["phase"] == "stopped"


async def test_liveness_fails_on_a_hung_handler_and_recovers(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """A handler call running past POOUL_STALL_TIMEOUT fails /healthz until it finishes."""
    settings = await make_runtime_settings(pooul_stall_timeout=0.4)
    topic = settings.pooul_topic_trade_signals
    await produce(settings, topic, [(b"hang", b"x"), (b"other", b"y")], partition=2)
    handler = Hanger()
    processor = StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "hung"), handler=handler, name="hung"
    )
    async with (
        aiohttp.ClientSession() as session,
        HealthServer(processor=processor, host="127.0.0.1", port=0) as server,
        processor,
    ):
        await wait_until(lambda: handler.handled == 1, what="the other record")
        await wait_until(lambda: not processor.snapshot().live, within=10, what="liveness to fail")
        status, body = await _get(session, f"{server.url}/healthz")
        assert status == 503 and any("partition 2" in p for p in body["problems"]), body
        assert processor.snapshot().partitions[2].oldest_unfinished_age > 0.4
        handler.release.set()
        await wait_until(lambda: processor.snapshot().live, within=10, what="liveness to recover")
        status, _ = await _get(session, f"{server.url}/healthz")
        assert status == 200


async def test_liveness_fails_when_the_consumer_stops_fetching(
    make_runtime_settings: RuntimeSettingsFactory,
) -> None:
    """Connected but no longer fetching (aiokafka's fetch routine died): pending records fail /healthz."""
    settings = await make_runtime_settings(pooul_stall_timeout=0.5)
    topic = settings.pooul_topic_trade_signals
    await produce(settings, topic, [(b"k%d" % i, b"x") for i in range(8)], partition=1)
    handler = Hanger()
    async with StreamProcessor(
        settings=settings, topic=topic, group_id=gid(settings, "silent"), handler=handler
    ) as processor:
        await wait_until(lambda: handler.handled == 8, what="the first records")
        await asyncio.sleep(1.0)
        assert processor.snapshot().live, "an idle, caught-up partition must count as live"
        assert processor._consumer is not None
        processor._consumer._fetcher._fetch_task.cancel()  # the known failure mode, for real
        await produce(settings, topic, [(b"late%d" % i, b"x") for i in range(5)], partition=1)
        await wait_until(lambda: not processor.snapshot().live, within=10, what="liveness to fail")
        assert handler.handled == 8
        assert any("no progress" in p for p in processor.snapshot().problems)
