"""Fixtures of the trades worker's integration tests (real broker, sandbox, ingress).

Joining a consumer group costs about half the session timeout on the test broker, so the
scenario tests share one `world`: one sandbox, one ingress, one running worker, per module.
Every scenario uses its own trades, and reads counters as deltas.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.broker import base_settings
from tests.fixtures.sandbox import SANDBOX_TIME_SCALE, sandbox_settings
from tests.trades.rig import TradesRig, running_worker
from worker.ingress.app import NOTIFY_PATH
from worker.ingress.server import IngressServer
from worker.sandbox import SandboxServer
from worker.settings import Settings
from worker.topics import create_topics
from worker.trades.metrics import TradesMetrics

# Small time scales so reconciliation, expiry and retries happen within a test.
FAST: dict[str, Any] = {
    "pooul_reconcile_schedule": "0.3,0.6",
    "pooul_reconcile_interval_max": 1.0,
    "pooul_reconcile_jitter": 0.0,
    "pooul_close_grace": 0.0,
    "pooul_retry_backoff_base": 0.05,
    "pooul_retry_backoff_max": 0.3,
    "pooul_commit_interval": 0.2,
    "pooul_circuit_open_seconds": 0.2,
    "pooul_circuit_open_max_seconds": 0.5,
    "pooul_request_timeout": 2.0,
    "pooul_shutdown_grace": 2.0,
    # The embedded broker delays a group's first join by about half the session timeout.
    "pooul_session_timeout": 2.0,
    "pooul_heartbeat_interval": 0.5,
}


async def fast_settings(bootstrap: str, sandbox_url: str, **overrides: Any) -> Settings:
    """Settings on fresh topics (created), its own group, pointing at `sandbox_url`."""
    settings = base_settings(
        bootstrap,
        **{
            "pooul_base_url": sandbox_url,
            "pooul_trades_group_id": f"pooul-trades-{uuid.uuid4().hex[:8]}",
            **FAST,
            **overrides,
        },
    )
    await create_topics(settings)
    return settings


@dataclass(frozen=True, slots=True)
class World:
    settings: Settings
    sandbox: SandboxServer
    rig: TradesRig
    metrics: TradesMetrics


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str) -> AsyncIterator[World]:
    """One sandbox, ingress, rig and running trades worker shared by a module's scenarios."""
    async with SandboxServer(settings=sandbox_settings(), time_scale=SANDBOX_TIME_SCALE) as sandbox:
        # Trades seen without an order-created signal expire (and are given up) within ~2 s;
        # a trade pending for 1 s counts as pending past the (real: ~3 h) notify retry span.
        settings = await fast_settings(
            kafka_bootstrap,
            sandbox.url,
            pooul_order_default_ttl=1.0,
            pooul_reconcile_give_up=1.0,
            pooul_trades_overdue_after=1.0,
        )
        async with IngressServer(settings=settings, host="127.0.0.1", port=0) as ingress:
            rig = TradesRig(
                settings=settings, sandbox_url=sandbox.url, notify_url=ingress.url + NOTIFY_PATH
            )
            await rig.start()
            try:
                async with running_worker(settings) as metrics:
                    yield World(settings, sandbox, rig, metrics)
            finally:
                await rig.stop()


@pytest.fixture
async def clean_faults(world: World) -> AsyncIterator[None]:
    """Faults a scenario sets on the shared sandbox are reset after it."""
    yield
    await world.rig.clear_faults()


RigFactory = Callable[[Settings], Awaitable[TradesRig]]


@pytest.fixture
async def rig_for(sandbox: SandboxServer) -> AsyncIterator[RigFactory]:
    """Factory: a started rig (own ingress + collectors) for the given settings; stopped after."""
    started: list[tuple[TradesRig, IngressServer]] = []

    async def factory(settings: Settings) -> TradesRig:
        ingress = IngressServer(settings=settings, host="127.0.0.1", port=0)
        await ingress.start()
        rig = TradesRig(
            settings=settings, sandbox_url=sandbox.url, notify_url=ingress.url + NOTIFY_PATH
        )
        await rig.start()
        started.append((rig, ingress))
        return rig

    yield factory
    for rig, ingress in reversed(started):
        await rig.stop()
        await ingress.stop()
