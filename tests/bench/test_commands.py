"""Every `pooul-worker bench` command runs end to end, small, and prints its table.

No number is checked against a target here (targets live in the benchmarks, not in timed
tests): these runs are too small and share the CI machine. What is checked is what the
benchmarks check themselves — every notify became one record, every paid trade one event with
its deterministic id, every order one result — and that the table and target lines are printed.
Against an external broker (`KAFKA_BOOTSTRAP_SERVERS`) they run there, on fresh topics.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_BENCHES = {
    "trades": (
        "--trades 40 --baseline-trades 8 --latency-ms 10 --paced-seconds 1",
        [
            "burst confirmed events/s",
            "paced notify→event written p50 / p99 (ms)",
            "ratio b/a (events/s):",
            "paced p99 notify→written:",
            "events: every trade exactly one `succeeded` event with its deterministic id",
        ],
    ),
    "ingress": (
        "--duration 1 --warmup 0.2 --concurrency 8",
        [
            "ratio b/a (peak requests/s):",
            "ratio b/v (peak, vs the verify-only server):",
            "(b) p99 at half its peak:",
            "other: none",
            "every success is one",
        ],
    ),
    "orders": (
        "--requests 40 --baseline-requests 8 --latency-ms 10",
        ["ratio b/a", "(b) CPU per order:", "results: {'created': "],
    ),
    "runtime": (
        "--records 2000 --baseline-records 100 --keys 100 --latency-ms 5 --restore-keys 2000",
        ["(b) stream runtime", "ratio (b)/(a)", "keys restored"],
    ),
}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("bench", sorted(_BENCHES))
def test_the_benchmark_runs_and_prints_its_table(bench: str) -> None:
    args, expected = _BENCHES[bench]
    done = subprocess.run(
        [sys.executable, "-m", "worker", "bench", bench, *args.split()],
        capture_output=True,
        text=True,
        timeout=140,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    missing = [line for line in expected if line not in done.stdout]
    assert not missing, f"{missing} not printed:\n{done.stdout[-3000:]}"
