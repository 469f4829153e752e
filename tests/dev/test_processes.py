"""Child processes of the dev stack stop cleanly, grandchildren included."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from worker.dev.processes import ChildExited, ChildProcess, port_is_free, wait_ready


def _alive(pid: int) -> bool:
    """True while /proc has a non-zombie process with this pid."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def _wait_gone(pids: list[int], within: float = 5.0) -> list[int]:
    for _ in range(int(within / 0.05)):
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return []
        await asyncio.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


async def test_stop_takes_the_whole_process_group_even_if_sigterm_is_ignored(tmp_path) -> None:
    """A child ignoring SIGTERM is killed after the grace, with the grandchild it spawned."""
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = ChildProcess(
        name="stubborn",
        argv=[sys.executable, "-c", script],
        env={},
        log_path=tmp_path / "stubborn.log",
    )
    child.start()
    for _ in range(200):
        text = child.log_path.read_text()
        if text.strip():
            break
        await asyncio.sleep(0.05)
    grandchild = int(text.split()[0])
    assert child.pid is not None and _alive(child.pid) and _alive(grandchild)

    await child.stop(grace=0.3)
    assert await _wait_gone([child.pid, grandchild]) == []
    assert child.returncode == -9
    await child.stop(grace=0.3)  # twice is harmless


async def test_wait_ready_reports_a_child_that_died_with_its_log(tmp_path) -> None:
    """A child exiting before it is ready raises ChildExited quoting its last log lines."""
    child = ChildProcess(
        name="crasher",
        argv=[sys.executable, "-c", "import sys; print('cannot reach Kafka'); sys.exit(3)"],
        env={},
        log_path=tmp_path / "crasher.log",
    )
    child.start()
    with pytest.raises(ChildExited, match=r"crasher exited with code 3[\s\S]*cannot reach Kafka"):
        await wait_ready(child, within=10, tcp_port=1)
    await child.stop(grace=1)


async def test_wait_ready_times_out_on_a_silent_child(tmp_path) -> None:
    """A live child that never listens makes wait_ready time out instead of hanging."""
    child = ChildProcess(
        name="silent",
        argv=[sys.executable, "-c", "import time; time.sleep(30)"],
        env={},
        log_path=tmp_path / "silent.log",
    )
    child.start()
    try:
        with pytest.raises(TimeoutError, match="silent not ready"):
            await wait_ready(child, within=0.3, http_url="http://127.0.0.1:1/healthz")
    finally:
        await child.stop(grace=1)


def test_port_is_free_sees_a_listening_socket() -> None:
    """A port someone listens on is not free; the dev stack then picks another one."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])
