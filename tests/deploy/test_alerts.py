"""deploy/k8s/monitoring: every alert reads metrics and labels the services really export, and
points at commands that exist."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry

from tests.deploy.files import K8S, load_all
from worker.cli import build_parser
from worker.ingress.metrics import IngressMetrics
from worker.orders.metrics import OrdersMetrics
from worker.runtime.metrics import PartitionSnapshot, RuntimeMetrics, RuntimeSnapshot
from worker.trades.metrics import TradesMetrics

_SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
_METRIC = re.compile(r"\bpooul_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(pooul_[a-z0-9_]+)\{([^}]*)\}")
_BY = re.compile(r"\bby \(([^)]*)\)[^()]*\(\s*(?:\w+\()?\s*(pooul_[a-z0-9_]+)")
_COMMAND = re.compile(r"pooul-worker ([a-z-]+)(?: ([a-z-]+))?")


def _rules() -> list[dict[str, Any]]:
    [rule] = load_all(K8S / "monitoring" / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _registries() -> list[CollectorRegistry]:
    """Fresh registries of every service, as they look right after start-up."""
    registries = [CollectorRegistry() for _ in range(4)]
    IngressMetrics(registry=registries[0])
    OrdersMetrics(registry=registries[1])
    TradesMetrics(registry=registries[2])
    runtime = RuntimeMetrics(registry=registries[3], worker="trades")
    partition = PartitionSnapshot(0, True, 0, 0.0, 0, 0, 0, False)
    runtime.watch(lambda: RuntimeSnapshot("running", 0, 1, 0, True, False, [partition]))
    return registries


def _exported() -> dict[str, set[str]]:
    """Every sample name the services export → the label names it carries."""
    samples: dict[str, set[str]] = {}
    for registry in _registries():
        collectors = set(registry._collector_to_names)  # label names of metrics with no child yet
        for family in registry.collect():
            declared = {
                label
                for collector in collectors
                if family.name in registry._collector_to_names[collector]
                for label in getattr(collector, "_labelnames", ())
            }
            for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)):
                labels = samples.setdefault(family.name + suffix, set(declared))
                for sample in family.samples:
                    labels.update(sample.labels)
    return samples


def _values(name: str, label: str) -> set[str]:
    """The values `label` takes on `name` right after start-up (pre-created children)."""
    return {
        sample.labels[label]
        for registry in _registries()
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and label in sample.labels
    }


def test_counters_alerts_count_exist_from_the_start() -> None:
    """`increase()` cannot see a counter's first step when its series appears already at 1:
    every labelled counter an alert takes `increase()`/`rate()` of has its children up front."""
    checked = 0
    for rule in _rules():
        for name in re.findall(r"(?:increase|rate)\((pooul_[a-z0-9_]+)", rule["expr"]):
            assert _samples(name), f"{rule['alert']}: {name} appears late"
            checked += 1
    assert checked >= 5


def _samples(name: str) -> bool:
    return any(
        sample.name == name
        for registry in _registries()
        for family in registry.collect()
        for sample in family.samples
    )


def test_alerts_read_exported_metrics_and_labels() -> None:
    exported = _exported()
    for rule in _rules():
        expr = rule["expr"]
        for name in _METRIC.findall(expr):
            assert name in exported, f"{rule['alert']}: {name} is not exported"
        for name, matchers in _SELECTOR.findall(expr):
            for label, values in re.findall(r'(\w+)\s*[=!]~?\s*"([^"]*)"', matchers):
                assert label in exported[name], f"{rule['alert']}: {name} has no label {label}"
                known = _values(name, label)
                if known:  # the label's values are pre-created: each one matched must exist
                    unknown = set(values.split("|")) - known
                    assert not unknown, f"{rule['alert']}: {name}{{{label}}} never is {unknown}"
        for labels, name in _BY.findall(expr):
            for label in (part.strip() for part in labels.split(",")):
                assert label in exported[name], f"{rule['alert']}: {name} has no label {label}"


def test_alerts_are_named_graded_and_explained() -> None:
    """Unique names, a severity, a summary and a description that use only the labels the
    expression keeps (`by (...)`)."""
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)) and all(n.startswith("Pooul") for n in names)
    for rule in _rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        kept = {
            label.strip() for labels, _ in _BY.findall(rule["expr"]) for label in labels.split(",")
        }
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in kept, f"{rule['alert']}: $labels.{label} is not kept by the expression"


def test_commands_in_alert_texts_exist() -> None:
    """`pooul-worker X Y` in a description names a real sub-command (and action)."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    seen = 0
    for rule in _rules():
        for command, action in _COMMAND.findall(rule["annotations"]["description"]):
            assert command in commands.choices, f"{rule['alert']}: no command {command}"
            sub = commands.choices[command]
            actions = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            if actions and action:
                assert action in actions[0].choices, f"{rule['alert']}: no {command} {action}"
            seen += 1
    assert seen >= 5
