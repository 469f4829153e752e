"""`pooul-worker dev` as a user runs it: a real process tree, a demo, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from worker.broker import free_port

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    """Free ports (a developer's own `pooul-worker dev` may hold the defaults) and a temp dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POOUL_", "KAFKA_"))  # the stack makes its own broker and config
    }
    env.update(
        POOUL_DEV_DIR=str(tmp_path / "dev"),
        POOUL_DEV_BROKER_PORT=str(free_port()),
        POOUL_SANDBOX_PORT=str(free_port()),
        POOUL_INGRESS_PORT=str(free_port()),
        POOUL_DEV_STOP_GRACE="5",
        PYTHONUNBUFFERED="1",
    )
    return env


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _pids(stderr: str) -> dict[str, int]:
    line = next(line for line in stderr.splitlines() if line.strip().startswith("pids"))
    return {name: int(pid) for name, pid in re.findall(r"(\w+)=(\d+)", line)}


async def _start(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "dev",
        *args,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _read_until(stream: asyncio.StreamReader, marker: str, within: float = 60) -> str:
    seen = []
    async with asyncio.timeout(within):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError("dev exited before: " + marker + "\n" + "".join(seen))
            seen.append(line)
            if marker in line:
                return "".join(seen)


async def test_demo_ends_with_a_passing_summary_and_no_process_left(tmp_path) -> None:
    """`dev --orders 20` prints a summary where every paid order has one succeeded event, exits
    0, and leaves none of its children running."""
    process = await _start(tmp_path, "--orders", "20", "--seed", "3")
    async with asyncio.timeout(110):
        stdout, stderr = await process.communicate()
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 0, out + err
    assert "OK: every paid order has exactly one succeeded event" in out
    paid = re.search(r"paid orders with exactly one succeeded event\s+(\d+) / (\d+)", out)
    assert paid is not None and paid.group(1) == paid.group(2) and int(paid.group(2)) > 0
    assert re.search(r"com\.pooul\.payment\.succeeded\s+\d+ / \d+", out)
    assert "stopped; no child process left" in err
    pids = _pids(err)
    assert set(pids) == {"broker", "sandbox", "ingress", "orders", "trades"}
    assert [name for name, pid in pids.items() if _alive(pid)] == []
    assert (tmp_path / "dev" / "logs" / "trades.log").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "signum", "expected"),
    [(("--no-demo",), signal.SIGINT, 0), (("--orders", "500"), signal.SIGTERM, 130)],
    ids=["sigint-no-demo", "sigterm-during-demo"],
)
async def test_a_signal_stops_every_child(tmp_path, args, signum, expected) -> None:
    """SIGINT on a running stack, or SIGTERM mid-demo, ends dev and every child process."""
    process = await _start(tmp_path, *args)
    assert process.stderr is not None
    try:
        marker = "running until Ctrl-C" if "--no-demo" in args else "demo:"
        seen = await _read_until(process.stderr, marker)
        pids = _pids(seen)
        assert all(_alive(pid) for pid in pids.values())
        process.send_signal(signum)
        async with asyncio.timeout(60):
            rest = (await process.stderr.read()).decode()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == expected, seen + rest
    assert "stopped; no child process left" in rest
    assert [name for name, pid in pids.items() if _alive(pid)] == []
