"""Fixtures of the ingress tests: a running ingress on the session broker and an HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.fixtures.broker import SettingsFactory
from worker.broker import EmbeddedBroker
from worker.ingress.server import IngressServer
from worker.settings import Settings
from worker.topics import create_topics

IngressFactory = Callable[..., Awaitable[IngressServer]]

# Short timeouts keep the fault tests fast; they are still far from the broker's real latency.
FAST = {
    "pooul_ingress_ack_timeout": 1.0,
    "pooul_ingress_read_timeout": 0.5,
    "pooul_ingress_ready_interval": 0.1,
    "pooul_ingress_shutdown_grace": 2.0,
}


@pytest.fixture
async def make_ingress() -> AsyncIterator[IngressFactory]:
    """Factory: `await make_ingress(settings)` → a started ingress on 127.0.0.1, stopped at the end."""
    servers: list[IngressServer] = []

    async def factory(settings: Settings, **kwargs: Any) -> IngressServer:
        server = IngressServer(settings=settings, host="127.0.0.1", port=0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


@pytest.fixture
async def ingress_settings(make_settings: SettingsFactory) -> Settings:
    """Settings with fresh topics on the session broker and the fast ingress timeouts."""
    return await make_settings(**FAST)


@pytest.fixture
async def ingress(make_ingress: IngressFactory, ingress_settings: Settings) -> IngressServer:
    """A running ingress writing to this test's trade-signals topic."""
    return await make_ingress(ingress_settings)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client with the platform's 5 s answer deadline."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        yield session


@pytest.fixture
async def private_broker(external_broker: bool) -> AsyncIterator[EmbeddedBroker]:
    """A broker only this test uses, so it can be stopped and restarted (empty, same port)."""
    if external_broker:
        pytest.skip("needs a broker the test can stop and restart")
    broker = EmbeddedBroker()
    await broker.start()
    yield broker
    await stop_broker(broker)


async def stop_broker(broker: EmbeddedBroker) -> None:
    """Stop a private broker (Tansu ignores SIGTERM: it is killed after 0.5 s, not 5 s)."""
    await asyncio.to_thread(broker.stop_sync, 0.5)


async def restart_broker(broker: EmbeddedBroker, settings: Settings) -> None:
    """Start a stopped private broker again; it comes back empty, so the topics are recreated.

    Right after a restart the embedded broker sometimes acknowledges every creation yet never
    lists some of the topics (seen in CI: four of seven still missing after three attempts over
    30 s, while clients of the old broker were reconnecting), so a creation whose topics do not
    show up within 2 s gets a fresh broker rather than more waiting.
    """
    for attempt in range(3):
        await broker.start()
        try:
            await create_topics(settings, visible_within=2.0)
            return
        except RuntimeError:
            if attempt == 2:
                raise
            await stop_broker(broker)


async def until_in_flight(ingress: IngressServer, count: int = 1) -> None:
    """Wait until `count` notifies are being handled by `ingress`."""
    async with asyncio.timeout(5):
        while True:
            if ingress.metrics.in_flight_now() >= count:
                return
            await asyncio.sleep(0.001)
