"""`pooul-worker topics create|describe`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from worker.lag import print_group_lag
from worker.settings import Settings
from worker.topics import create_topics, describe_topics

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("topics", help="create or describe the Kafka topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create missing topics (idempotent)",
        description="Partitions and replication factor come from POOUL_TOPIC_PARTITIONS and "
        "POOUL_TOPIC_REPLICATION_FACTOR unless given here.",
    )
    create.add_argument("--partitions", type=int, help="partitions per topic")
    create.add_argument("--replication-factor", type=int, help="replicas per partition")
    create.set_defaults(run=_create)
    describe = actions.add_parser("describe", help="partitions and end offsets of each topic")
    describe.set_defaults(run=_describe)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    update: dict[str, int] = {}
    if args.partitions is not None:
        update["pooul_topic_partitions"] = args.partitions
    if args.replication_factor is not None:
        update["pooul_topic_replication_factor"] = args.replication_factor
    settings = settings.model_copy(update=update)
    outcome = asyncio.run(create_topics(settings))
    for topic, result in outcome.items():
        print(f"{result:8} {topic}")
    return 0


def _describe(args: argparse.Namespace, settings: Settings) -> int:
    infos = asyncio.run(describe_topics(settings))
    print(f"{'topic':40} {'partitions':>10} {'records':>10}")
    for info in infos:
        print(f"{info.name:40} {info.partitions:>10} {info.records:>10}")
    missing = set(settings.topics().values()) - {info.name for info in infos}
    for name in sorted(missing):
        print(f"{name:40} {'missing':>10}")
    print_group_lag(settings)
    return 0
