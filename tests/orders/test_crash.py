"""SIGKILL the real `pooul-worker orders` process mid-run: every request answered, no double order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from schemas.orders import OrderCreated
from tests.orders.rig import Rig, order_request
from worker.broker import free_port
from worker.settings import Settings

REQUESTS = 1500
KILL_AT = (300, 650, 1000)  # distinct mch_trade_ids answered when each SIGKILL lands


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOUL_", "KAFKA_"))}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name == "pooul_merchant_keys":
            continue
        env[name.upper()] = str(value)
    env["POOUL_MERCHANT_KEYS"] = settings.merchant_keys.as_json()
    env["POOUL_WORKER_PORT"] = "0"
    env["POOUL_LOG_LEVEL"] = "WARNING"
    return env


async def start_worker(
    rig: Rig, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `pooul-worker orders`; wait until its /readyz says it owns partitions (→ its port)."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns at once, the child runs on
            [sys.executable, "-m", "worker", "orders", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    async with asyncio.timeout(30):
        while True:
            assert process.poll() is None, f"the worker exited, see {log}"
            try:
                async with rig.http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return process, port
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def answered(rig: Rig, total: int, *, within: float) -> set[str]:
    """Poll results until `total` distinct mch_trade_ids are answered (TimeoutError otherwise)."""
    reader = rig.reader(rig.settings.pooul_topic_order_results)
    async with asyncio.timeout(within):
        while True:
            await reader.poll()
            keys = {r.key.decode() for r in reader.records if r.key is not None}
            if len(keys) >= total:
                return keys


@pytest.mark.slow
async def test_sigkill_during_a_run_loses_nothing_and_never_orders_twice(make_rig, tmp_path):
    """Three SIGKILLs while 1500 requests flow: all answered `created`, one platform order each."""
    # Platform latency and a small in-flight budget keep the run long enough for the kills
    # to land while requests are still pending (about 1000 orders/s at most).
    rig = await make_rig(pooul_topic_partitions=4, pooul_max_in_flight=40)
    await rig.faults(latency_ms=[20, 40])
    requests = [order_request(mch_trade_id=f"K{i:05d}", total_fee=100 + i) for i in range(REQUESTS)]
    await rig.send_many(requests)
    env = worker_env(rig.settings)
    log = tmp_path / "orders.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for threshold in KILL_AT:
            process, _ = await start_worker(rig, env, log)
            processes.append(process)
            await answered(rig, threshold, within=30)
            processes[-1].send_signal(signal.SIGKILL)
            processes[-1].wait()
        before_last = len(await answered(rig, 0, within=1))
        process, port = await start_worker(rig, env, log)
        processes.append(process)
        await answered(rig, REQUESTS, within=45)
        async with rig.http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        async with rig.http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        processes[-1].send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(processes[-1].wait, 20)
        assert code == 0, f"SIGTERM should stop the worker cleanly, see {log}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    records = await rig.reader(rig.settings.pooul_topic_order_results).settle(0.3)
    results = [r for r in await rig.results(len(records))]
    by_id: dict[str, set[tuple[str, str | None, int]]] = defaultdict(set)
    for _, result in results:
        assert isinstance(result, OrderCreated), result
        by_id[result.mch_trade_id].add((result.trade_id, result.token_id, result.total_fee))
    assert len(by_id) == REQUESTS
    # Repeats after a crash carry the same ids: never a second order for one mch_trade_id.
    assert all(len(ids) == 1 for ids in by_id.values())
    platform = await rig.platform_orders()
    per_id: dict[str, int] = defaultdict(int)
    for order in platform:
        per_id[order["mch_trade_id"]] += 1
    assert len(platform) == REQUESTS
    assert set(per_id.values()) == {1}
    for mch_trade_id, ids in by_id.items():
        [(_, _, fee)] = ids
        assert fee == 100 + int(mch_trade_id[1:])
    signal_keys = {
        r.key for r in await rig.reader(rig.settings.pooul_topic_trade_signals).settle(0.3)
    }
    assert signal_keys == {trade_id.encode() for ids in by_id.values() for trade_id, _, _ in ids}
    assert len(results) >= REQUESTS
    assert before_last < REQUESTS, "the kills landed after all the work was done"
    # The last worker served what was left: new orders, repeats and 107 recoveries.
    assert 'pooul_orders_results_total{outcome="created"' in metrics
    assert "pooul_orders_platform_latency_seconds_bucket" in metrics
    assert "pooul_runtime_records_total" in metrics
