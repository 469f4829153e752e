"""A small HTTP/1.1 load generator for the benchmarks: closed loop (peak) and paced (latency).

    result = await closed_loop(host=h, port=p, requests=itertools.cycle(raw), concurrency=64,
                                warmup=1, duration=5, server_pid=pid)
    result.rate, result.percentile_ms(99), result.cpu_per_request

    sent = await deliver(host=h, port=p, requests=raw, rate=700.0)  # each one once
    sent.sent_at[i], sent.answered_at[i]

`requests` yields complete raw HTTP requests. Connections are keep-alive asyncio protocols that
send one request at a time and parse `Content-Length` answers: aiohttp's client costs more CPU
per request than a small aiohttp server, so with it a benchmark would mostly measure its client.
Server CPU is read from /proc/<pid>/stat, so only the server process counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from worker.bench.harness import percentile_ms, process_cpu

__all__ = ["Delivery", "PhaseResult", "closed_loop", "deliver", "paced", "post_request"]

_TICK = 0.001  # event loop timers have millisecond resolution


class Delivery(NamedTuple):
    """Per request, by index: when it was sent (or scheduled) and when its answer arrived."""

    sent_at: list[float]
    answered_at: list[float]


@dataclass
class PhaseResult:
    """One phase against one server."""

    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answers: Counter[tuple[int, bytes]] = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile_ms(self.latencies, p)

    @property
    def cpu_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests:
            return None
        return self.server_cpu / self.requests

    @property
    def successes(self) -> int:
        return self.answers[(200, b"success")]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self, on_answer: Callable[[_Connection, int, bytes], None]) -> None:
        self._on_answer = on_answer
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.busy = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, sent_at: float) -> None:
        assert self.transport is not None
        self.sent_at = sent_at
        self.busy = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(buffer) < total:
                return
            status = int(head[9:12])
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            self.busy = False
            self._on_answer(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _connect(
    host: str, port: int, count: int, on_answer: Callable[[_Connection, int, bytes], None]
) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(lambda: _Connection(on_answer), host, port)
        connections.append(protocol)
    return connections


def _close(connections: list[_Connection]) -> None:
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()


async def _drain(connections: list[_Connection], backlog: deque[float] | None = None) -> None:
    """Wait (10 s at most) until every request sent has been answered."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while True:
                if not backlog and not any(c.busy for c in connections):
                    return
                await asyncio.sleep(0.005)


async def closed_loop(
    *,
    host: str,
    port: int,
    requests: Iterator[bytes],
    concurrency: int,
    warmup: float,
    duration: float,
    server_pid: int,
) -> PhaseResult:
    """Every connection sends its next request as soon as it has an answer."""
    result = PhaseResult()
    measuring = False
    stopping = False

    def on_answer(connection: _Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        if measuring:
            result.latencies.append(now - connection.sent_at)
            result.answers[(status, body)] += 1
        if not stopping:
            connection.send(next(requests), now)

    connections = await _connect(host, port, concurrency, on_answer)
    try:
        started = time.perf_counter()
        for connection in connections:
            connection.send(next(requests), started)
        await asyncio.sleep(warmup)
        measuring = True
        cpu0, client0, t0 = process_cpu(server_pid), time.process_time(), time.perf_counter()
        await asyncio.sleep(duration)
        measuring = False
        cpu1, client1, t1 = process_cpu(server_pid), time.process_time(), time.perf_counter()
        stopping = True
        await _drain(connections)
    finally:
        _close(connections)
    result.seconds = t1 - t0
    result.requests = len(result.latencies)
    result.server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result.client_cpu = client1 - client0
    return result


async def _on_schedule(start: float, rate: float, total: int) -> AsyncIterator[tuple[int, float]]:
    """`(i, start + i / rate)` for each i < total, yielded once it is due.

    Between due times it sleeps, but at least a timer tick: a shorter sleep spins, and a
    spinning generator steals the CPU the server under test needs.
    """
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            yield sent, start + sent / rate
            sent += 1
        await asyncio.sleep(max(_TICK, start + sent / rate - time.perf_counter()))


async def paced(
    *,
    host: str,
    port: int,
    requests: Iterator[bytes],
    rate: float,
    warmup: float,
    duration: float,
    server_pid: int,
    pool: int = 256,
) -> PhaseResult:
    """Requests leave on a fixed schedule; latency counts from the scheduled time."""
    result = PhaseResult()
    idle: deque[_Connection] = deque()
    backlog: deque[float] = deque()
    measure_from = 0.0

    def on_answer(connection: _Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        if connection.sent_at >= measure_from:
            result.latencies.append(now - connection.sent_at)
            result.answers[(status, body)] += 1
        if backlog:
            connection.send(next(requests), backlog.popleft())
        else:
            idle.append(connection)

    connections = await _connect(host, port, pool, on_answer)
    idle.extend(connections)
    try:
        start = time.perf_counter()
        measure_from = start + warmup
        cpu0: float | None = None
        client0 = 0.0
        async for _, scheduled in _on_schedule(start, rate, int(rate * (warmup + duration))):
            if cpu0 is None and time.perf_counter() >= measure_from:
                cpu0, client0 = process_cpu(server_pid), time.process_time()
            if idle:
                idle.popleft().send(next(requests), scheduled)
            else:
                backlog.append(scheduled)
        await _drain(connections, backlog)
        cpu1, client1 = process_cpu(server_pid), time.process_time()
    finally:
        _close(connections)
    result.seconds = duration
    result.requests = len(result.latencies)
    result.server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result.client_cpu = client1 - client0
    return result


def post_request(path: str, body: bytes, *, content_type: str = "application/json") -> bytes:
    """A complete keep-alive HTTP/1.1 POST request for the connections here."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def deliver(
    *,
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float | None = None,
    concurrency: int = 64,
    pool: int = 256,
    expect: tuple[int, bytes] = (200, b"success"),
) -> Delivery:
    """Send each request once and return when all are answered: when each was sent and when
    its answer came, by index.

    With `rate`, request i leaves at start + i / rate (its "sent" time is that scheduled time,
    so a late send counts as latency); without, `concurrency` connections send back to back.
    Raises RuntimeError when an answer is not `expect`: the benchmarks count only real work.
    """
    sent_at = [0.0] * len(requests)
    answered_at = [0.0] * len(requests)
    # Without `rate`: the requests not sent yet, taken by whichever connection is free.
    pending: deque[int] = deque(range(len(requests)) if rate is None else ())
    backlog: deque[tuple[int, float]] = deque()  # (index, scheduled time) with no idle connection
    idle: deque[_Connection] = deque()
    index: dict[_Connection, int] = {}
    done = asyncio.get_running_loop().create_future()
    answered = 0
    wrong: list[str] = []

    def send(connection: _Connection, i: int, at: float) -> None:
        index[connection] = i
        sent_at[i] = at
        connection.send(requests[i], at)

    def on_answer(connection: _Connection, status: int, body: bytes) -> None:
        nonlocal answered
        answered += 1
        answered_at[index[connection]] = time.perf_counter()
        if (status, body.strip().lower()) != expect and len(wrong) < 3:
            wrong.append(f"request {index[connection]}: {status} {body[:200]!r}")
        if backlog:
            send(connection, *backlog.popleft())
        elif pending:
            send(connection, pending.popleft(), time.perf_counter())
        else:
            idle.append(connection)
        if answered == len(requests) and not done.done():
            done.set_result(None)

    if not requests:
        return Delivery(sent_at, answered_at)
    connections = await _connect(host, port, concurrency if rate is None else pool, on_answer)
    try:
        start = time.perf_counter()
        if rate is None:
            for connection in connections:
                if pending:
                    send(connection, pending.popleft(), start)
        else:
            idle.extend(connections)
            async for i, scheduled in _on_schedule(start, rate, len(requests)):
                if idle:
                    send(idle.popleft(), i, scheduled)
                else:
                    backlog.append((i, scheduled))
        # A connection the server closes would leave its request unanswered: stop there.
        await asyncio.wait([done, *(c.closed for c in connections)], return_when="FIRST_COMPLETED")
    finally:
        _close(connections)
    if not done.done():
        raise RuntimeError(
            f"the server closed a connection; {answered} of {len(requests)} answered"
        )
    if wrong:
        raise RuntimeError(f"unexpected answers: {wrong}")
    return Delivery(sent_at, answered_at)
