"""Child processes of the local stack: started in their own process group, stopped without strays.

Each child gets its own session (`start_new_session=True`) so a terminal Ctrl-C reaches only the
supervisor, which then stops the children in order (workers first, the broker last). Stopping
signals the whole process group, so anything a child spawned goes too: SIGTERM, a grace period,
then SIGKILL.

    child = ChildProcess(name="sandbox", argv=[...], env=env, log_path=Path(".dev/sandbox.log"))
    child.start()
    await wait_ready(child, http_url="http://127.0.0.1:8090/sandbox/health", within=20)
    await child.stop(grace=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

__all__ = ["ChildExited", "ChildProcess", "port_is_free", "wait_ready"]


class ChildExited(RuntimeError):
    """A child process ended while the stack needed it."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` and we could bind it now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class ChildProcess:
    """One role of the stack as an OS process, its output appended to `log_path`."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        """Raise `ChildExited` (with the end of its log) if the child is not running."""
        if self._process is not None and self._process.poll() is not None:
            raise ChildExited(
                f"{self.name} exited with code {self._process.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, *, grace: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; twice is harmless."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, grace)
        if process.poll() is None:
            self._signal_group(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        # The leader is gone; anything it left in its group goes with it.
        self._signal_group(signal.SIGKILL)
        return process.returncode

    def kill_now(self) -> None:
        """Last resort for an interpreter exit path: SIGKILL the group, no waiting."""
        if self._process is not None:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)


async def wait_ready(
    child: ChildProcess,
    *,
    within: float,
    http_url: str | None = None,
    tcp_port: int | None = None,
) -> None:
    """Wait until the child answers 200 on `http_url` (or accepts TCP on `tcp_port`).

    Raises `ChildExited` if it dies first and `TimeoutError` when it never gets ready.
    """
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while True:
            child.check()
            if await _probe(session, http_url=http_url, tcp_port=tcp_port):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{child.name} not ready after {within:.0f} s; last lines of "
                    f"{child.log_path}:\n{child.log_tail()}"
                )
            await asyncio.sleep(0.1)


async def _probe(
    session: aiohttp.ClientSession, *, http_url: str | None, tcp_port: int | None
) -> bool:
    if http_url is not None:
        try:
            async with session.get(http_url) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
    if tcp_port is not None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    raise ValueError("wait_ready needs http_url or tcp_port")
