"""Real worker processes killed with SIGKILL at random points, and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.runtime.conftest import RuntimeSettingsFactory
from tests.runtime.helpers import committed_offsets, gid, produce, read_topic, wait_until
from worker.runtime.state import decode_entry
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None or isinstance(value, dict | list):
            continue
        env[name.upper()] = str(
            value.get_secret_value() if hasattr(value, "get_secret_value") else value
        )
    env["HANDLER_DELAY"] = "0.01"
    env["KILL_TEST_GROUP"] = gid(settings, "kill-test")
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextlib.asynccontextmanager
async def _worker(settings: Settings, out: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A worker process; killed at the end if the test left it running."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.runtime.kill_target",
        str(out),
        env=_child_env(settings),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


def _lines(out: Path) -> list[tuple[bytes, int]]:
    if not out.exists():
        return []
    pairs = []
    for line in out.read_bytes().splitlines():
        key, offset = line.rsplit(b",", 1)
        pairs.append((key, int(offset)))
    return pairs


async def test_sigkill_at_random_points_never_skips_a_record(
    make_runtime_settings: RuntimeSettingsFactory, tmp_path: Path
) -> None:
    """Killed four times under load, then run to the end: every record handled, per key in order."""
    settings = await make_runtime_settings(pooul_max_in_flight=200)
    topic = settings.pooul_topic_trade_signals
    written = await produce(
        settings, topic, [(b"key-%02d" % (i % 20), b"%d" % i) for i in range(2400)]
    )
    expected: dict[bytes, list[int]] = defaultdict(list)
    for i, (_, offset) in enumerate(written):
        expected[b"key-%02d" % (i % 20)].append(offset)
    out = tmp_path / "handled.txt"
    rng = random.Random()
    kills = 0
    for _ in range(4):
        before = len(_lines(out))

        def progressed(before: int = before) -> bool:
            return len(_lines(out)) > before

        async with _worker(settings, out) as child:
            await wait_until(progressed, within=20, what="the child to make progress")
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
            kills += 1

    async with _worker(settings, out) as child:
        total = len(written)
        await wait_until(
            lambda: len(set(_lines(out))) == total,
            within=90,
            what="every record after the restarts",
        )
        child.send_signal(signal.SIGTERM)
        code = await child.wait()
    assert code == 0
    assert kills == 4

    first_seen: dict[bytes, list[int]] = defaultdict(list)
    seen: set[tuple[bytes, int]] = set()
    for pair in _lines(out):
        if pair not in seen:
            seen.add(pair)
            first_seen[pair[0]].append(pair[1])
    for key, offsets in expected.items():
        assert first_seen[key] == offsets, f"{key!r}: a record was skipped or handled out of order"
    # Each handling adds one to the key's count in state: a count below the records seen means
    # a restart began from an empty state instead of restoring the changelog.
    latest = {r.key: r.value for r in await read_topic(settings, settings.pooul_topic_trade_state)}
    for key, offsets in expected.items():
        value = latest[key]
        assert value is not None
        state = decode_entry(value).value
        assert state["last"] == offsets[-1]
        assert state["n"] >= len(offsets), f"{key!r}: state restarted from empty after a kill"


async def test_sigterm_drains_and_commits_everything_handled(
    make_runtime_settings: RuntimeSettingsFactory, tmp_path: Path
) -> None:
    """SIGTERM mid-load: the worker exits 0 and its commits cover exactly what it handled."""
    settings = await make_runtime_settings(pooul_max_in_flight=100, pooul_shutdown_grace=5.0)
    topic = settings.pooul_topic_trade_signals
    await produce(
        settings, topic, [(b"key-%02d" % (i % 20), b"%d" % i) for i in range(2000)], partition=0
    )
    out = tmp_path / "handled.txt"
    async with _worker(settings, out) as child:
        await wait_until(
            lambda: len(_lines(out)) > 100, within=20, what="the child to make progress"
        )
        child.send_signal(signal.SIGTERM)
        assert await child.wait() == 0
    handled = _lines(out)
    assert len(handled) < 2000, "the load finished before SIGTERM; nothing was tested"
    assert len(set(handled)) == len(handled), "a record was handled twice without any crash"
    committed = (await committed_offsets(settings, gid(settings, "kill-test"), topic))[0]
    handled_offsets = sorted(offset for _, offset in handled)
    # Drained: everything fetched was finished, so the commit is the contiguous prefix handled.
    assert handled_offsets == list(range(len(handled)))
    assert committed == len(handled)
