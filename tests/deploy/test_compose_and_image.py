"""deploy/compose.yaml and deploy/Dockerfile agree with Settings, the CLI and each other."""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.deploy.files import (
    DEFAULTS,
    DEPLOY,
    SETTINGS_ENV,
    WELL_KNOWN_ENV,
    load_all,
    parse_command,
    subcommands,
    yaml_files,
)
from worker.settings import Settings

_ROLES = {"topics", "sandbox", "ingress", "orders", "trades"}


def _compose() -> dict[str, Any]:
    [doc] = load_all(DEPLOY / "compose.yaml")
    return dict(doc)


def _pooul_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if service.get("image", "").startswith("pooul-worker")
    }


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    steps = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            steps.append((instruction.upper(), rest.strip()))
    return steps


def _json_or_shell(arguments: str) -> list[str]:
    if arguments.startswith("["):
        return list(orjson.loads(arguments))
    return shlex.split(arguments)


def test_every_deploy_yaml_file_parses() -> None:
    """Every YAML document under deploy/ parses to a mapping (a YAML-anchors-aware load)."""
    files = yaml_files()
    assert len(files) >= 15
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict | list), path


def test_compose_runs_kafka_in_kraft_mode_and_every_role() -> None:
    """The official Apache Kafka image in KRaft mode (no ZooKeeper), topics created first."""
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in name for name in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka

    pooul = _pooul_services()
    roles = {parse_command(service["command"]).command for service in pooul.values()}
    assert roles == _ROLES
    assert parse_command(pooul["topics"]["command"]).action == "create"
    for name, service in pooul.items():
        if name in ("topics", "sandbox"):
            continue
        depends = service["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        assert depends["kafka"]["condition"] == "service_healthy", name


def test_compose_env_is_settings_and_validates() -> None:
    """Every variable the roles get is a Settings field (or well-known) and builds valid
    Settings whose broker, base URL and notify URL point at the compose services."""
    services = _compose()["services"]
    for name, service in _pooul_services().items():
        env = {k: str(v) for k, v in service["environment"].items()}
        unknown = set(env) - SETTINGS_ENV - WELL_KNOWN_ENV
        assert not unknown, f"{name}: env vars that no setting reads: {sorted(unknown)}"
        settings = Settings(**{k.lower(): v for k, v in env.items() if k in SETTINGS_ENV})
        assert settings.kafka_bootstrap_servers.split(":")[0] in services
        assert urlsplit(settings.pooul_base_url).hostname in services
        assert settings.pooul_notify_url is not None
        assert urlsplit(settings.pooul_notify_url).hostname in services
        assert urlsplit(settings.pooul_notify_url).path == "/pooul/notify"
        assert settings.topics() == DEFAULTS.topics(), "compose uses the documented topic names"


def test_compose_ports_match_settings_and_healthchecks() -> None:
    """Published ports, listen ports and health URLs agree for each role."""
    pooul = _pooul_services()
    ingress_env = pooul["ingress"]["environment"]
    assert int(ingress_env["POOUL_INGRESS_PORT"]) == DEFAULTS.pooul_ingress_port
    assert pooul["ingress"]["ports"] == [
        f"{DEFAULTS.pooul_ingress_port}:{DEFAULTS.pooul_ingress_port}"
    ]
    assert urlsplit(ingress_env["HEALTHCHECK_URL"]).port == DEFAULTS.pooul_ingress_port
    notify = urlsplit(ingress_env["POOUL_NOTIFY_URL"])
    assert notify.port == DEFAULTS.pooul_ingress_port
    for role in ("orders", "trades"):
        env = pooul[role]["environment"]
        assert int(env["POOUL_WORKER_PORT"]) == DEFAULTS.pooul_worker_port
        assert urlsplit(env["HEALTHCHECK_URL"]).port == DEFAULTS.pooul_worker_port
    sandbox = pooul["sandbox"]
    args = parse_command(sandbox["command"])
    assert args.port == DEFAULTS.pooul_sandbox_port
    assert sandbox["ports"] == [f"{args.port}:{args.port}"]
    assert urlsplit(sandbox["environment"]["POOUL_BASE_URL"]).port == args.port
    merchants = orjson.loads(sandbox["environment"]["POOUL_MERCHANT_KEYS"])
    assert merchants, "the sandbox knows the compose merchant"


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    """Two stages from a slim base, a numeric non-root USER, a HEALTHCHECK, pooul-worker entry."""
    steps = _dockerfile()
    stages = [args for instruction, args in steps if instruction == "FROM"]
    assert len(stages) >= 2
    assert all("-slim" in stage for stage in stages)
    runtime_start = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    runtime = steps[runtime_start:]
    [user] = [args for instruction, args in runtime if instruction == "USER"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) >= 1000
    assert any(instruction == "HEALTHCHECK" for instruction, _ in runtime)
    [entrypoint] = [args for instruction, args in runtime if instruction == "ENTRYPOINT"]
    assert _json_or_shell(entrypoint) == ["pooul-worker"]
    [cmd] = [args for instruction, args in runtime if instruction == "CMD"]
    first = _json_or_shell(cmd)[0]
    assert first == "--help" or first in subcommands()


def test_dockerfile_env_and_ports_match_settings() -> None:
    """ENV names are settings or well-known; EXPOSE lists the ingress and worker default ports."""
    env_names: set[str] = set()
    exposed: set[int] = set()
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            env_names |= {pair.split("=", 1)[0] for pair in shlex.split(args)}
        elif instruction == "EXPOSE":
            exposed |= {int(port.split("/")[0]) for port in args.split()}
    assert env_names, "the Dockerfile sets its environment"
    assert not env_names - SETTINGS_ENV - WELL_KNOWN_ENV
    assert exposed == {DEFAULTS.pooul_ingress_port, DEFAULTS.pooul_worker_port}
