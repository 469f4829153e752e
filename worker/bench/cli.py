"""`pooul-worker bench <name>`: each benchmark module exposes `register(subparsers)`."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["register"]

_BENCH_MODULES: tuple[str, ...] = (
    "worker.bench.ingress",
    "worker.bench.runtime",
    "worker.bench.orders",
    "worker.bench.trades",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark and print a table (ratio against a same-run baseline)"
    )
    benches = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for module_name in _BENCH_MODULES:
        importlib.import_module(module_name).register(benches)
