"""Broker outage: the ingress says 503 `fail` within the platform's 5 s (never `success`), turns
not-ready, and recovers by itself when the broker is back. Uses a private broker it can stop, or
one behind a proxy that holds its writes (a broker up but too slow)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.fixtures.broker import base_settings
from tests.fixtures.kafka_faults import PRODUCE, KafkaFaultProxy
from tests.ingress.conftest import FAST, restart_broker, stop_broker, until_in_flight
from tests.ingress.helpers import post, signed_notify, topic_records
from worker.ingress.app import PUBLISHER_KEY
from worker.ingress.server import IngressServer
from worker.topics import create_topics


async def _settle(ingress: IngressServer) -> None:
    """Wait until records of refused notifies have expired in the producer (after the ack timeout).

    Only needed because the test broker restarts *empty*: a stale record landing between the
    restart and the topics' re-creation corrupts Tansu's offsets for that partition. Real Kafka
    keeps its topics, so this window does not exist there.
    """
    await ingress.app[PUBLISHER_KEY].flush()


async def _readiness(http, url: str, *, want: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with http.get(url + "/readyz") as response:
                if response.status == want:
                    body: dict[str, Any] = await response.json()
                    return body
            await asyncio.sleep(0.05)


async def test_broker_outage_gives_503_and_recovery_needs_no_restart(
    private_broker, make_ingress, http
):
    """With the broker stopped a signed notify gets 503 `fail` inside the 5 s client deadline and
    /readyz turns 503; after the broker returns (empty, topics recreated) the same ingress becomes
    ready and answers `success` again; the new topic holds only that record."""
    settings = base_settings(private_broker.bootstrap_servers, **FAST)
    await create_topics(settings)
    ingress = await make_ingress(settings)
    assert (await post(http, ingress.url, signed_notify()[1]))[:2] == (200, "success")

    await stop_broker(private_broker)
    # `http` gives up after 5 s, the platform's deadline: a hang fails this line.
    assert (await post(http, ingress.url, signed_notify()[1]))[:2] == (503, "fail")
    assert ingress.metrics.count("broker_timeout") + ingress.metrics.count("broker_error") == 1
    assert (await _readiness(http, ingress.url, want=503))["ready"] is False

    await _settle(ingress)
    await restart_broker(private_broker, settings)
    assert (await _readiness(http, ingress.url, want=200))["ready"] is True
    trade_id, body = signed_notify()
    assert (await post(http, ingress.url, body))[:2] == (200, "success")
    # The refused notify was not written late: the platform's retry is the only way back in.
    assert [r.key for r in await topic_records(settings)] == [trade_id.encode()]


async def test_a_notify_waiting_for_its_ack_at_shutdown_is_answered_before_close(
    kafka_faults: KafkaFaultProxy, make_ingress
):
    """A notify still waiting for the broker when shutdown starts is not abandoned: once the
    broker answers inside the grace period it gets `success` and its record is on the topic.
    The broker is slow (its writes held 1.5 s by the proxy) rather than stopped: a stopped test
    broker comes back empty, and a write landing before its topics are re-created can be lost."""
    settings = base_settings(
        kafka_faults.bootstrap_servers,
        **{**FAST, "pooul_ingress_ack_timeout": 4.0, "pooul_ingress_shutdown_grace": 4.5},
    )
    await create_topics(settings)
    ingress = await make_ingress(settings)
    kafka_faults.delay(PRODUCE, 1.5, naming=settings.pooul_topic_trade_signals)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        trade_id, body = signed_notify()
        delivery = asyncio.create_task(post(http, ingress.url, body))
        await until_in_flight(ingress)
        stopping = asyncio.create_task(ingress.stop())
        await asyncio.sleep(0.2)
        assert not delivery.done() and not stopping.done()
        assert (await delivery)[:2] == (200, "success")
        await stopping
    assert [r.key for r in await topic_records(settings)] == [trade_id.encode()]


async def test_a_broker_slower_than_the_deadline_gets_503_in_time_never_a_late_success(
    kafka_faults: KafkaFaultProxy, make_ingress, http
):
    """The broker is up but its writes take longer than the ack timeout (each held 2.5 s by a
    proxy; the timeout is 1 s): the notify gets 503 `fail` when the deadline passes, neither a
    hang until the late acknowledgement nor `success` for it. Quick again, quick `success`."""
    settings = base_settings(kafka_faults.bootstrap_servers, **FAST)
    await create_topics(settings)
    ingress = await make_ingress(settings)
    assert (await post(http, ingress.url, signed_notify()[1]))[:2] == (200, "success")

    kafka_faults.delay(PRODUCE, 2.5, naming=settings.pooul_topic_trade_signals)
    started = time.monotonic()
    assert (await post(http, ingress.url, signed_notify()[1]))[:2] == (503, "fail")
    assert 1.0 <= time.monotonic() - started < 2.0
    assert ingress.metrics.count("broker_timeout") == 1

    kafka_faults.heal()
    trade_id, body = signed_notify()
    started = time.monotonic()
    assert (await post(http, ingress.url, body))[:2] == (200, "success")
    assert time.monotonic() - started < 1.0
    assert trade_id.encode() in [r.key for r in await topic_records(settings)]
