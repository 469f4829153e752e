"""SIGKILL the real `pooul-worker trades` process mid-run, then run two workers through a
rebalance: every paid trade gets its event, every event id is one fact, repeats repeat the id."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from schemas.trade_state import TradeState
from tests.fixtures.broker import MERCHANT_ID
from tests.fixtures.sandbox import SANDBOX_TIME_SCALE, sandbox_settings
from tests.trades.conftest import fast_settings
from tests.trades.rig import PlacedOrder, TradesRig, wait_until
from worker.broker import free_port
from worker.ingress.app import NOTIFY_PATH
from worker.ingress.server import IngressServer
from worker.sandbox import SandboxServer
from worker.settings import Settings
from worker.trades.events import event_id

PAID = 1400
UNPAID = 100


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOUL_", "KAFKA_"))}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name == "pooul_merchant_keys":
            continue
        env[name.upper()] = str(value)
    env["POOUL_MERCHANT_KEYS"] = settings.merchant_keys.as_json()
    env["POOUL_LOG_LEVEL"] = "WARNING"
    return env


class Workers:
    """`pooul-worker trades` child processes, all logging to one file."""

    def __init__(self, *, env: dict[str, str], log: Path, http: aiohttp.ClientSession) -> None:
        self._env = env
        self._log = log
        self._http = http
        self.processes: list[subprocess.Popen[bytes]] = []

    async def start(self) -> subprocess.Popen[bytes]:
        """Start one and wait until its /readyz says it owns restored partitions."""
        port = free_port()
        with self._log.open("ab") as sink:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once, the child runs on
                [sys.executable, "-m", "worker", "trades", "--port", str(port)],
                env=self._env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        async with asyncio.timeout(30):
            while True:
                assert process.poll() is None, f"the worker exited, see {self._log}"
                try:
                    async with self._http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            return process
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
async def test_sigkill_and_rebalance_lose_no_payment_and_keep_ids_stable(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two SIGKILLs, then two workers sharing the partitions and one leaving, while 1400
    paid trades (a fifth of their notifies lost, the rest duplicated) and 100 unpaid flow."""
    async with SandboxServer(settings=sandbox_settings(), time_scale=SANDBOX_TIME_SCALE) as sandbox:
        settings = await fast_settings(
            kafka_bootstrap, sandbox.url, pooul_max_in_flight=64, pooul_commit_interval=0.5
        )
        async with IngressServer(settings=settings, host="127.0.0.1", port=0) as ingress:
            rig = TradesRig(
                settings=settings, sandbox_url=sandbox.url, notify_url=ingress.url + NOTIFY_PATH
            )
            await rig.start()
            try:
                await _run(rig, settings, tmp_path / "trades.log")
            finally:
                await rig.stop()


async def _create(rig: TradesRig, count: int) -> list[PlacedOrder]:
    semaphore = asyncio.Semaphore(64)

    async def one(i: int) -> PlacedOrder:
        async with semaphore:
            return await rig.create_order(total_fee=100 + i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _run(rig: TradesRig, settings: Settings, log: Path) -> None:
    orders = await _create(rig, PAID + UNPAID)
    paid, unpaid = orders[:PAID], orders[PAID:]
    # Platform latency keeps the run long enough for the kills to land mid-way.
    await rig.faults(latency_ms=[10, 30], notify_loss_rate=0.2, notify_duplicates=1)
    workers = Workers(env=worker_env(settings), log=log, http=rig.http)

    def confirmed() -> int:
        return len({e.data.trade_id for _, e in rig.events})

    allowed = [500]

    async def pay_all() -> None:
        # Paced, and never past `allowed`: each kill and rebalance lands while work is pending.
        done = 0
        while done < PAID:
            batch = paid[done : min(done + 50, allowed[0])]
            if not batch:
                await asyncio.sleep(0.05)
                continue
            await asyncio.gather(*(rig.pay(o.trade_id) for o in batch))
            done += len(batch)
            await asyncio.sleep(0.2)

    started = time.monotonic()
    try:
        first = await workers.start()
        paying = asyncio.create_task(pay_all())
        await wait_until(lambda: confirmed() >= 200, within=30, what="200 trades confirmed")
        first.send_signal(signal.SIGKILL)
        first.wait()
        kills = [confirmed()]
        allowed[0] = 800
        second = await workers.start()
        await wait_until(lambda: confirmed() >= 450, within=30, what="450 trades confirmed")
        second.send_signal(signal.SIGKILL)
        second.wait()
        kills.append(confirmed())
        allowed[0] = 1150
        third = await workers.start()
        # Two workers: the group splits the partitions (state restored on each move) ...
        fourth = await workers.start()
        joined = confirmed()
        await wait_until(lambda: confirmed() >= 900, within=30, what="900 trades confirmed")
        # ... and one leaves again: its partitions move back to the other.
        left = confirmed()
        allowed[0] = PAID
        third.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(third.wait, 20) == 0, f"unclean stop, see {log}"
        await paying
        await wait_until(lambda: confirmed() >= PAID, within=40, what="every paid trade")
        fourth.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(fourth.wait, 20) == 0, f"unclean stop, see {log}"
    finally:
        workers.kill_all()
    elapsed = time.monotonic() - started
    await rig.settle()

    by_trade: dict[str, set[str]] = defaultdict(set)
    facts: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for key, event in rig.events:
        by_trade[event.data.trade_id].add(event.id)
        facts[event.id].add((event.data.trade_id, event.data.trade_state))
        assert key == event.subject.encode()
    # Every paid trade has its event; unpaid ones have none.
    assert set(by_trade) == {o.trade_id for o in paid}
    assert not {o.trade_id for o in unpaid} & set(by_trade)
    # Every id is one fact, and repeats (after a crash) carry the same id.
    assert all(len(f) == 1 for f in facts.values())
    for order in paid:
        assert by_trade[order.trade_id] == {event_id(MERCHANT_ID, order.trade_id, TradeState.PAID)}
    fees = {o.trade_id: o.total_fee for o in orders}
    for _, event in rig.events:
        assert event.data.total_fee == fees[event.data.trade_id]
    assert {e.data.confirmed_by for _, e in rig.events} == {"notify", "reconcile"}
    assert rig.dead_letters == []
    assert max(*kills, joined, left) < PAID, "a kill or a rebalance came after all the work"
    print(
        f"\n{len(rig.events)} events for {PAID} paid trades "
        f"({len(rig.events) - PAID} repeats) in {elapsed:.1f} s; confirmed at the kills "
        f"{kills}, at the rebalances {joined} and {left}"
    )
