"""`pooul-worker ingress` refuses unsafe deadlines and fails clearly without a broker."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

from tests.fixtures.broker import MERCHANT_KEYS
from worker.broker import free_port
from worker.ingress.cli import _run
from worker.settings import Settings


def test_deadlines_adding_up_to_the_platforms_5_s_are_refused():
    """Read + ack timeouts of 5 s or more could answer `success` after the platform gave up:
    the command exits 2 before opening anything."""
    settings = Settings(pooul_ingress_read_timeout=1.0, pooul_ingress_ack_timeout=4.0)
    assert _run(argparse.Namespace(host="127.0.0.1", port=0), settings) == 2


async def test_without_a_reachable_broker_the_command_exits_1():
    """With nothing listening at the bootstrap address the command logs `cannot reach Kafka`
    and exits 1 instead of serving notifies it could not write."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "POOUL_MERCHANT_KEYS": orjson.dumps(MERCHANT_KEYS).decode(),
        "POOUL_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "ingress", "--host", "127.0.0.1", "--port", str(free_port()),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    messages = [orjson.loads(line)["msg"] for line in stderr.splitlines() if line.startswith(b"{")]
    assert "cannot reach Kafka" in messages
