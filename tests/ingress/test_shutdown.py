"""Graceful shutdown: in-flight notifies finish within the grace period, late ones are cut off
without a `success`, and the real command exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import orjson

from tests.fixtures.broker import MERCHANT_ID
from tests.ingress.conftest import FAST, until_in_flight
from tests.ingress.helpers import NOTIFY_PATH, post, record_count, signed_notify, topic_records
from worker.broker import free_port


async def _start_request(
    port: int, body: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send the headers and half of the body: the request is now in flight on the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {NOTIFY_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    return reader, writer


async def test_notifies_in_flight_at_shutdown_are_finished_not_dropped(
    make_ingress, ingress_settings, http
):
    """Stopping while notifies are being handled lets each of them finish: every request that got
    `success` is on the topic, none was cancelled, and the rest were refused without `success`."""
    ingress = await make_ingress(ingress_settings)
    notifies = [signed_notify() for _ in range(300)]

    async def deliver(body: bytes) -> str:
        try:
            return (await post(http, ingress.url, body))[1]
        except aiohttp.ClientError:
            return "refused"

    deliveries = [asyncio.create_task(deliver(body)) for _, body in notifies]
    await until_in_flight(ingress)
    await ingress.stop()
    answers = await asyncio.gather(*deliveries)
    succeeded = {
        trade.encode()
        for (trade, _), answer in zip(notifies, answers, strict=True)
        if answer == "success"
    }
    assert succeeded, "no request was in flight when the stop began"
    assert set(answers) <= {"success", "refused"}
    assert ingress.metrics.count("cancelled") == 0
    assert sorted(r.key for r in await topic_records(ingress_settings)) == sorted(succeeded)


async def test_a_request_still_unfinished_after_the_grace_period_gets_no_success(
    make_ingress, make_settings
):
    """A request that outlives the grace period is cancelled: the sender sees the connection close
    without `success`, nothing is written, and stop() returns."""
    settings = await make_settings(
        **{**FAST, "pooul_ingress_read_timeout": 4.0, "pooul_ingress_shutdown_grace": 0.2}
    )
    ingress = await make_ingress(settings)
    reader, writer = await _start_request(ingress.port, signed_notify()[1])
    await until_in_flight(ingress)
    async with asyncio.timeout(5):
        await ingress.stop()
        leftover = await reader.read()
    writer.close()
    assert b"success" not in leftover
    assert ingress.metrics.count("cancelled") == 1
    assert await record_count(settings) == 0


async def test_the_command_serves_until_sigterm_and_exits_cleanly(make_settings):
    """`pooul-worker ingress` (uvloop) answers a signed notify with `success`, logs one JSON line
    for it, and exits 0 on SIGTERM."""
    settings = await make_settings()
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "POOUL_MERCHANT_KEYS": settings.merchant_keys.as_json(),
        "POOUL_TOPIC_TRADE_SIGNALS": settings.pooul_topic_trade_signals,
        "POOUL_LOG_FORMAT": "json",
        "POOUL_INGRESS_READY_INTERVAL": "0.1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "ingress", "--host", "127.0.0.1", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with http.get(url + "/readyz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.05)
            trade_id, body = signed_notify()
            assert (await post(http, url, body))[:2] == (200, "success")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    lines = [
        orjson.loads(line)
        for line in (await process.stderr.read()).splitlines()
        if line.startswith(b"{")
    ]
    [listening] = [line for line in lines if line["msg"] == "ingress listening"]
    assert listening["loop"].startswith("uvloop")
    [notify] = [line for line in lines if line["msg"] == "notify"]
    assert (notify["trade_id"], notify["merchant_id"], notify["outcome"]) == (
        trade_id,
        MERCHANT_ID,
        "success",
    )
    assert any(line["msg"] == "ingress stopped" for line in lines)
