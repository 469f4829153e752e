"""Contracts as documents: JSON Schema per message model and an AsyncAPI 3 description of the topics.

Everything is generated from `schemas.registry` and the `Settings` defaults, never written by
hand, so the documents cannot drift from the code: `--check` (and the contracts test) regenerate
in memory and compare with the committed files.

    pooul-worker schemas export            # rewrite schemas/jsonschema/*.json and schemas/asyncapi.yaml
    pooul-worker schemas export --check    # exit 1 and list the files that are stale
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import yaml

import schemas
from schemas.registry import COMPONENTS, MESSAGES, TOPICS, Message, Topic
from worker import __version__
from worker.settings import Settings

__all__ = ["DEFAULT_DIR", "check_contracts", "register", "render_contracts", "write_contracts"]

DEFAULT_DIR = Path(schemas.__file__).parent
JSON_SCHEMA_DIR = "jsonschema"
ASYNCAPI_FILE = "asyncapi.yaml"
_KAFKA_BINDING = "0.5.0"
_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
REGENERATE = "pooul-worker schemas export"


def render_contracts() -> dict[str, str]:
    """Relative path → file content for every contract document."""
    files = {_schema_path(m): _json_schema(m) for m in MESSAGES}
    files[ASYNCAPI_FILE] = _asyncapi()
    return dict(sorted(files.items()))


def write_contracts(directory: Path = DEFAULT_DIR) -> list[str]:
    """Write the documents, remove stale schema files; returns the paths that changed."""
    wanted = render_contracts()
    changed = []
    for relative, content in wanted.items():
        path = directory / relative
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            changed.append(relative)
    for stale in _stale_files(directory, wanted):
        (directory / stale).unlink()
        changed.append(stale)
    return changed


def check_contracts(directory: Path = DEFAULT_DIR) -> list[str]:
    """Problems (`missing`, `stale`, `unexpected` per file); empty when the files are current."""
    wanted = render_contracts()
    problems = []
    for relative, content in wanted.items():
        path = directory / relative
        if not path.exists():
            problems.append(f"missing: {relative}")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"stale: {relative}")
    problems.extend(f"unexpected: {stale}" for stale in _stale_files(directory, wanted))
    return problems


def _stale_files(directory: Path, wanted: dict[str, str]) -> list[str]:
    schema_dir = directory / JSON_SCHEMA_DIR
    if not schema_dir.is_dir():
        return []
    present = {f"{JSON_SCHEMA_DIR}/{p.name}" for p in schema_dir.glob("*.json")}
    return sorted(present - set(wanted))


def _schema_path(message: Message) -> str:
    return f"{JSON_SCHEMA_DIR}/{message.name}.json"


def _json_schema(message: Message) -> str:
    mode: Literal["validation", "serialization"] = (
        "validation" if message.direction == "inbound" else "serialization"
    )
    schema = message.model.model_json_schema(mode=mode)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{message.name}.json",
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


def _logical(topic: Topic) -> str:
    """`pooul_topic_trade_signals` → `tradeSignals` (the AsyncAPI channel id)."""
    words = topic.setting.removeprefix("pooul_topic_").split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def _asyncapi() -> str:
    messages = {m.name: m for m in MESSAGES}
    named = {n for t in TOPICS for n in t.messages}
    for t in TOPICS:
        for names in (*t.producers.values(), *t.consumers.values()):
            if not set(names) <= set(t.messages):
                raise ValueError(f"{t.setting}: a party names messages not on the topic: {names}")
    unknown = sorted(named - set(messages))
    if unknown:
        raise ValueError(f"schemas.registry.TOPICS names unknown messages: {unknown}")
    partitions = _default("pooul_topic_partitions")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel_id = _logical(topic)
        address = _default(topic.setting)
        parties = [f"Key: {topic.key}."]
        if topic.external_producers:
            parties.append(f"Written by {topic.external_producers}.")
        if topic.external_consumers:
            parties.append(f"Read by {topic.external_consumers}.")
        parties.append(f"Topic name setting: `{topic.setting.upper()}`.")
        channels[channel_id] = {
            "address": address,
            "title": address,
            "description": topic.description + "\n\n" + " ".join(parties),
            "bindings": {
                "kafka": {
                    "topic": address,
                    "partitions": partitions,
                    "topicConfiguration": {
                        "cleanup.policy": ["compact"] if topic.compacted else ["delete"]
                    },
                    "bindingVersion": _KAFKA_BINDING,
                }
            },
        }
        if topic.messages:
            channels[channel_id]["messages"] = {
                name: {"$ref": f"#/components/messages/{name}"} for name in topic.messages
            }
        if topic.internal:
            channels[channel_id]["tags"] = [{"name": "internal"}]
        for action, sides in (("send", topic.producers), ("receive", topic.consumers)):
            for component, listed in sides.items():
                names = listed or topic.messages
                operation: dict[str, Any] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"{COMPONENTS[component]} {action}s on {address}",
                    "tags": [{"name": component}],
                }
                if names:
                    operation["messages"] = [
                        {"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in names
                    ]
                verb = "Send" if action == "send" else "Receive"
                operations[f"{component}{verb}{channel_id[0].upper()}{channel_id[1:]}"] = operation
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "pooul-worker",
            "version": __version__,
            "description": "Kafka topics of pooul-worker: order requests in, order results and "
            "payment events out, and the internal topics between its components. Generated by "
            f"`{REGENERATE}` from `schemas/registry.py`; do not edit by hand.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "`pooul-worker dev` or `docker compose up` (deploy/compose.yaml); "
                "set KAFKA_BOOTSTRAP_SERVERS for any other cluster.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": {m.name: _message(m) for m in MESSAGES}},
    }
    header = f"# Generated by `{REGENERATE}` from schemas/registry.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


def _message(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": message.name,
        "title": message.name,
        "summary": message.summary,
        "contentType": "application/json",
        "payload": {
            "schemaFormat": _SCHEMA_FORMAT,
            "schema": {"$ref": f"./{_schema_path(message)}"},
        },
    }
    if message.headers:
        entry["headers"] = {
            "type": "object",
            "properties": {
                h.name: {"type": "string", "description": h.description} for h in message.headers
            },
            "required": [h.name for h in message.headers if h.required],
        }
    return entry


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schemas", help="export the message contracts as documents")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write schemas/jsonschema/*.json and schemas/asyncapi.yaml",
        description="Generate JSON Schema for every message model and an AsyncAPI 3 document "
        "for the topics, from schemas/registry.py.",
    )
    export.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is not current"
    )
    export.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"target directory (default {DEFAULT_DIR})"
    )
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        problems = check_contracts(args.dir)
        for problem in problems:
            print(problem)
        if problems:
            print(f"contract documents are out of date: run `{REGENERATE}` and commit the result")
            return 1
        print(f"contract documents are current ({len(render_contracts())} files)")
        return 0
    changed = write_contracts(args.dir)
    for relative in changed:
        print(f"wrote {args.dir / relative}")
    print(f"{len(changed)} file(s) changed")
    return 0
