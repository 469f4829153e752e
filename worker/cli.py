"""`pooul-worker` command line: one image, the command picks the role.

Each sub-command lives in its own module exposing `register(subparsers)`; the module adds a
parser whose `run` default is `run(args, settings) -> int`. Settings are loaded once, here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker import __version__
from worker.logs import configure_logging
from worker.settings import SettingsError, load_settings

__all__ = ["main"]

# Order is the order of `--help`.
_COMMAND_MODULES = (
    "worker.topics_cli",
    "worker.sandbox.cli",
    "worker.ingress.cli",
    "worker.orders.cli",
    "worker.trades.cli",
    "worker.bench.cli",
    "worker.schemas_export",
    "worker.dlq_cli",
    "worker.trade_cli",
    "worker.dev.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pooul-worker",
        description="Kafka workers for the Pooul payment platform (alipay.jsapi).",
    )
    parser.add_argument("--version", action="version", version=f"pooul-worker {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pooul-worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.pooul_log_level, settings.pooul_log_format)
    code: int = args.run(args, settings)
    return code
