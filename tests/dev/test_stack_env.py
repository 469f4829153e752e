"""What the local stack's children inherit from the developer's shell."""

from __future__ import annotations

import pytest

from worker.dev.stack import DevStack, StackOptions
from worker.settings import Settings


def test_a_real_clusters_client_settings_do_not_reach_the_embedded_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A shell set up for production Kafka (idempotence, SASL, three replicas) still runs
    `make dev`: the children talk to the embedded broker with its own plain settings, and
    unrelated variables pass through."""
    for name, value in {
        "KAFKA_ENABLE_IDEMPOTENCE": "true",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_PASSWORD": "secret",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092",
        "POOUL_TOPIC_REPLICATION_FACTOR": "3",
        "POOUL_MERCHANT_KEYS": '{"prod": "key"}',
        "SOME_TOOL_SETTING": "kept",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POOUL_DEV_DIR", str(tmp_path / "dev"))
    stack = DevStack(settings=Settings(), options=StackOptions())
    env = stack.env
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == stack.endpoints.bootstrap_servers
    assert {k for k in env if k.startswith("KAFKA_")} == {"KAFKA_BOOTSTRAP_SERVERS"}
    assert "POOUL_TOPIC_REPLICATION_FACTOR" not in env
    assert "prod" not in env["POOUL_MERCHANT_KEYS"]
    assert env["SOME_TOOL_SETTING"] == "kept"
    assert stack.settings.kafka_enable_idempotence is False
