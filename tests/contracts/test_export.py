"""The committed contract documents are current, complete and internally consistent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from schemas.registry import MESSAGES, TOPICS
from worker.cli import main
from worker.schemas_export import (
    ASYNCAPI_FILE,
    DEFAULT_DIR,
    REGENERATE,
    check_contracts,
    render_contracts,
    write_contracts,
)
from worker.settings import Settings


def test_committed_documents_match_the_models() -> None:
    """schemas/jsonschema/*.json and schemas/asyncapi.yaml are exactly what the models produce."""
    problems = check_contracts(DEFAULT_DIR)
    assert not problems, (
        f"contract documents differ from the models: {problems}; run `{REGENERATE}` and commit"
    )


def test_check_reports_stale_missing_and_unexpected_files(tmp_path: Path) -> None:
    """--check names every stale, missing or extra file, and export repairs all of them."""
    write_contracts(tmp_path)
    assert check_contracts(tmp_path) == []
    schema = tmp_path / "jsonschema" / f"{MESSAGES[0].name}.json"
    schema.write_text(schema.read_text() + " ", encoding="utf-8")
    (tmp_path / ASYNCAPI_FILE).unlink()
    (tmp_path / "jsonschema" / "Removed.json").write_text("{}", encoding="utf-8")

    assert sorted(check_contracts(tmp_path)) == sorted(
        [
            f"stale: jsonschema/{MESSAGES[0].name}.json",
            f"missing: {ASYNCAPI_FILE}",
            "unexpected: jsonschema/Removed.json",
        ]
    )
    assert main(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 1
    assert main(["schemas", "export", "--dir", str(tmp_path)]) == 0
    assert check_contracts(tmp_path) == []
    assert not (tmp_path / "jsonschema" / "Removed.json").exists()


def test_rendering_is_deterministic() -> None:
    """Two renderings are byte-identical, so the check cannot flap."""
    assert render_contracts() == render_contracts()


def test_every_json_schema_is_valid_json_of_its_model() -> None:
    """Each schema file parses, names its model and lists the model's required fields."""
    files = render_contracts()
    for message in MESSAGES:
        document = json.loads(files[f"jsonschema/{message.name}.json"])
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["title"] == message.name
        required = {n for n, f in message.model.model_fields.items() if f.is_required()}
        assert required <= set(document.get("required", [])), message.name


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_asyncapi_document_is_complete_and_its_references_resolve() -> None:
    """Every project topic is a channel at its default name and every $ref points somewhere real."""
    files = render_contracts()
    document = yaml.safe_load(files[ASYNCAPI_FILE])
    assert document["asyncapi"].startswith("3.")

    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(Settings.model_construct().topics().values())

    for ref in _refs(document):
        if ref.startswith("#/"):
            assert _resolve(document, ref) is not None, ref
        else:
            assert ref.removeprefix("./") in files, ref

    for operation in document["operations"].values():
        channel_id = operation["channel"]["$ref"].removeprefix("#/channels/")
        channel = document["channels"][channel_id]
        for message_ref in operation.get("messages", []):
            name = message_ref["$ref"].rsplit("/", 1)[-1]
            assert name in channel["messages"], (channel_id, name)


def test_every_message_is_on_a_topic_and_every_topic_setting_exists() -> None:
    """No exported model is orphaned and each topic names a real Settings field."""
    on_topics = {name for topic in TOPICS for name in topic.messages}
    assert {m.name for m in MESSAGES} == on_topics
    for topic in TOPICS:
        assert topic.setting in Settings.model_fields, topic.setting
