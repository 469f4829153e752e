"""Loading deploy/ files and the facts they are checked against (Settings, the CLI)."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from pathlib import Path
from typing import Any

import yaml

from worker.cli import build_parser
from worker.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"

# Environment variables that are not Settings fields but are legitimately set.
WELL_KNOWN_ENV = frozenset(
    {
        "PATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PIP_NO_CACHE_DIR",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "HEALTHCHECK_URL",  # read by the image's HEALTHCHECK only
    }
)

SETTINGS_ENV = frozenset(name.upper() for name in Settings.model_fields)
DEFAULTS = Settings.model_construct()


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def k8s_objects(directory: Path = K8S / "base") -> list[dict[str, Any]]:
    """Every Kubernetes object in a directory's YAML files (kustomization files excluded)."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
                objects.append(doc)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def parse_command(argv: list[str]) -> argparse.Namespace:
    """Parse `pooul-worker <argv>` with the real parser; raises AssertionError when it refuses."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(
            f"`pooul-worker {shlex.join(argv)}` is refused: {errors.getvalue()}"
        ) from exc


def subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("pooul-worker has no sub-commands")
