"""The benchmarks' HTTP/1.1 load generator against a real aiohttp server: every request sent
once, on schedule, and a wrong answer or a dropped connection is an error, never a number."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from worker.bench.httpload import deliver, post_request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_post("/notify", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """Answers `success` and records every body it got."""
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(text="success")

    async for port in _serve(handle):
        yield port, bodies


async def test_every_request_is_sent_once_and_answered(
    echo_server: tuple[int, list[bytes]],
) -> None:
    port, bodies = echo_server
    requests = [post_request("/notify", b"n%03d" % n) for n in range(200)]
    before = time.perf_counter()
    sent = await deliver(host="127.0.0.1", port=port, requests=requests, concurrency=8)
    assert sorted(bodies) == [b"n%03d" % n for n in range(200)]
    assert all(
        before <= at <= answered <= time.perf_counter()
        for at, answered in zip(sent.sent_at, sent.answered_at, strict=True)
    )


async def test_a_paced_run_sends_on_schedule(echo_server: tuple[int, list[bytes]]) -> None:
    port, bodies = echo_server
    requests = [post_request("/notify", b"x") for _ in range(100)]
    started = time.perf_counter()
    sent_at, _ = await deliver(host="127.0.0.1", port=port, requests=requests, rate=500.0, pool=16)
    elapsed = time.perf_counter() - started
    assert len(bodies) == 100
    # Request i is scheduled at first + i / rate: exactly 2 ms apart, 198 ms in all.
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    assert all(gap == pytest.approx(0.002) for gap in gaps)
    assert elapsed >= 0.19  # it waited for the schedule rather than sending all at once


async def test_an_unexpected_answer_fails_the_run() -> None:
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="fail")

    async for port in _serve(refuse):
        with pytest.raises(RuntimeError, match="503"):
            await deliver(host="127.0.0.1", port=port, requests=[post_request("/notify", b"x")])


async def test_a_connection_the_server_drops_fails_the_run() -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # before any answer: the client sees the connection go
        return web.Response(text="success")

    async for port in _serve(hang_up):
        with pytest.raises(RuntimeError, match="closed a connection"):
            async with asyncio.timeout(10):
                await deliver(host="127.0.0.1", port=port, requests=[post_request("/notify", b"x")])
