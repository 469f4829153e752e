"""deploy/k8s: Kustomize base + overlay agree with Settings, the CLI and each other."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import (
    DEFAULTS,
    K8S,
    SETTINGS_ENV,
    WELL_KNOWN_ENV,
    k8s_objects,
    load_all,
    of_kind,
    parse_command,
    pod_spec,
)
from worker.settings import Settings

# Worker role → (the Settings field of its consumer group, of its input topic).
_WORKERS = {
    "orders": ("pooul_orders_group_id", "pooul_topic_order_requests"),
    "trades": ("pooul_trades_group_id", "pooul_topic_trade_signals"),
}
_PORTS = {
    "ingress": DEFAULTS.pooul_ingress_port,
    "orders": DEFAULTS.pooul_worker_port,
    "trades": DEFAULTS.pooul_worker_port,
}


def _kustomization(directory: Path) -> dict[str, Any]:
    [doc] = load_all(directory / "kustomization.yaml")
    return dict(doc)


def _config_literals(directory: Path) -> dict[str, str]:
    literals: dict[str, str] = {}
    for generator in _kustomization(directory).get("configMapGenerator", []):
        for literal in generator.get("literals", []):
            name, _, value = literal.partition("=")
            literals[name] = value
    return literals


def _workloads() -> list[dict[str, Any]]:
    objects = k8s_objects()
    return of_kind(objects, "Deployment") + of_kind(objects, "Job")


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def test_every_kustomization_resource_and_patch_exists() -> None:
    """Each resource, patch and base a kustomization names is a file or directory that exists."""
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = _kustomization(path.parent)
        for resource in kustomization.get("resources", []):
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: resource {resource} missing"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{target} is no kustomization"
        for patch in kustomization.get("patches", []):
            assert (path.parent / patch["path"]).exists(), f"{path}: patch {patch} missing"
    listed = set(_kustomization(K8S / "base")["resources"])
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "every base manifest is listed in the kustomization (and only those)"


def test_env_names_are_settings_and_values_validate(tmp_path: Path) -> None:
    """Every env var the manifests set is a Settings field, and the shared config validates."""
    names = set(_config_literals(K8S / "base")) | set(_config_literals(K8S / "overlays/example"))
    for workload in _workloads():
        for container in pod_spec(workload)["containers"]:
            names |= {entry["name"] for entry in container.get("env", [])}
    unknown = names - SETTINGS_ENV - WELL_KNOWN_ENV
    assert not unknown, f"env vars that no setting reads: {sorted(unknown)}"

    keys = tmp_path / "merchant-keys.json"
    keys.write_text('{"888": "k"}', encoding="utf-8")
    for overlay in (K8S / "base", K8S / "overlays/example"):
        literals = {**_config_literals(K8S / "base"), **_config_literals(overlay)}
        literals["POOUL_MERCHANT_KEYS_FILE"] = str(keys)
        settings = Settings(**{k.lower(): v for k, v in literals.items()})
        assert settings.pooul_topic_partitions == DEFAULTS.pooul_topic_partitions


def test_containers_run_real_subcommands() -> None:
    """Each container's args are accepted by `pooul-worker`'s own parser."""
    seen = set()
    for workload in _workloads():
        for container in pod_spec(workload)["containers"]:
            assert "command" not in container, "the image's ENTRYPOINT is pooul-worker"
            args = parse_command(container["args"])
            seen.add(args.command)
    assert {"ingress", "orders", "trades", "topics"} <= seen


def test_probe_ports_match_container_ports_and_settings() -> None:
    """Probes hit the declared container port, which is the role's Settings default and env."""
    for deployment in of_kind(k8s_objects(), "Deployment"):
        role = _component(deployment)
        [container] = pod_spec(deployment)["containers"]
        ports = {p["containerPort"] for p in container["ports"]}
        assert ports == {_PORTS[role]}, role
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        port_var = "POOUL_INGRESS_PORT" if role == "ingress" else "POOUL_WORKER_PORT"
        assert env[port_var] == str(_PORTS[role]), role
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == _PORTS[role], (role, probe)
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(_PORTS[role])


def test_workloads_are_locked_down_and_bounded() -> None:
    """Non-root, no privilege escalation, read-only root, resources set, graceful termination."""
    graces = {
        "ingress": DEFAULTS.pooul_ingress_shutdown_grace,
        "orders": DEFAULTS.pooul_shutdown_grace,
        "trades": DEFAULTS.pooul_shutdown_grace,
    }
    for workload in _workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["serviceAccountName"] == "pooul-worker"
        role = _component(workload)
        if role in graces:
            assert spec["terminationGracePeriodSeconds"] > graces[role] + 5, role
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            keys_dir = str(Path(_config_literals(K8S / "base")["POOUL_MERCHANT_KEYS_FILE"]).parent)
            assert mounts["merchant-keys"] == keys_dir
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["merchant-keys"]["secret"]["secretName"] == "pooul-merchant-keys"


def test_scalers_target_the_right_deployments_within_partitions() -> None:
    """HPA scales the ingress only; KEDA scales each worker on its own group and topic, at most
    one replica per partition."""
    objects = k8s_objects()
    deployments = {d["metadata"]["name"]: _component(d) for d in of_kind(objects, "Deployment")}
    [hpa] = of_kind(objects, "HorizontalPodAutoscaler")
    assert deployments[hpa["spec"]["scaleTargetRef"]["name"]] == "ingress"
    scaled = of_kind(objects, "ScaledObject")
    assert {deployments[s["spec"]["scaleTargetRef"]["name"]] for s in scaled} == set(_WORKERS)
    partitions = int(_config_literals(K8S / "base")["POOUL_TOPIC_PARTITIONS"])
    assert partitions == DEFAULTS.pooul_topic_partitions
    for scaled_object in scaled:
        role = deployments[scaled_object["spec"]["scaleTargetRef"]["name"]]
        group_field, topic_field = _WORKERS[role]
        [trigger] = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == getattr(DEFAULTS, group_field)
        assert metadata["topic"] == getattr(DEFAULTS, topic_field)
        assert int(metadata["lagThreshold"]) > 0
        assert metadata["allowIdleConsumers"] == "false"
        assert (
            metadata["bootstrapServers"]
            == _config_literals(K8S / "base")["KAFKA_BOOTSTRAP_SERVERS"]
        )
        assert scaled_object["spec"]["minReplicaCount"] >= 1
        assert scaled_object["spec"]["maxReplicaCount"] <= partitions


def test_selectors_match_pod_labels() -> None:
    """PDBs and the Service select pods of exactly one Deployment; the Service port is named."""
    objects = k8s_objects()
    templates = {
        d["metadata"]["name"]: (d["spec"]["template"]["metadata"]["labels"], d)
        for d in of_kind(objects, "Deployment")
    }
    for labels, deployment in templates.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    selectors = [
        p["spec"]["selector"]["matchLabels"] for p in of_kind(objects, "PodDisruptionBudget")
    ]
    [service] = of_kind(objects, "Service")
    selectors.append(service["spec"]["selector"])
    for selector in selectors:
        matching = [n for n, (labels, _) in templates.items() if selector.items() <= labels.items()]
        assert len(matching) == 1, selector
    assert len(of_kind(objects, "PodDisruptionBudget")) == len(templates)
    [ingress] = [d for _, d in templates.values() if _component(d) == "ingress"]
    names = {p["name"] for p in pod_spec(ingress)["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_kustomize_builds(overlay: str) -> None:
    """`kubectl kustomize` renders the directory (skipped where kubectl is not installed)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the pure-YAML checks above still ran")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        {
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "PodDisruptionBudget",
            "ScaledObject",
            "Service",
            "ServiceAccount",
        }
    )
    [config] = of_kind(objects, "ConfigMap")
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        refs = {
            e["configMapRef"]["name"]
            for c in pod_spec(workload)["containers"]
            for e in c["envFrom"]
        }
        assert refs == {config["metadata"]["name"]}, "generated ConfigMap name is wired in"
    if overlay != "base":
        assert {o["metadata"].get("namespace") for o in objects} == {"payments"}
        servers = {
            s["spec"]["triggers"][0]["metadata"]["bootstrapServers"]
            for s in of_kind(objects, "ScaledObject")
        }
        assert servers == {config["data"]["KAFKA_BOOTSTRAP_SERVERS"]}
