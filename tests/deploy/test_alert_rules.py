"""deploy/k8s/monitoring in Prometheus's own rule engine (`promtool`, from Debian's `prometheus`
package, which `make test` installs when it runs as root; skipped without it): the rules load,
and each alert fires on the series it is meant for — with its labels and rendered texts — and
stays quiet on the near misses.

Series use promtool's notation: `0+1x20` is 0, 1, …, 20 one interval (1 minute) apart, `1x10`
is 1 eleven times, `_` a missing sample.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import K8S, load_all

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package `prometheus`)"
)

_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")
_DEAD_LETTERS = (
    'pooul_runtime_dead_letters_total{worker="orders",kind="record",outcome="permanent"}'
)


@dataclass(frozen=True)
class Case:
    """At `at`, `alert` fires once per label set in `fires` (none: it stays quiet)."""

    alert: str
    series: dict[str, str]
    at: str
    fires: list[dict[str, str]] = field(default_factory=list)


CASES = [
    # Ingress: every pod's broker watch says not ready for 2 minutes, or nothing reports.
    Case(
        "PooulIngressBrokerNotReady",
        {
            'pooul_ingress_broker_ready{pod="a"}': "1 1 0x8",
            'pooul_ingress_broker_ready{pod="b"}': "1 0x9",
        },
        "6m",
        [{}],
    ),
    Case(
        "PooulIngressBrokerNotReady",
        {
            'pooul_ingress_broker_ready{pod="a"}': "0x10",
            'pooul_ingress_broker_ready{pod="b"}': "1x10",
        },
        "6m",
    ),
    Case("PooulIngressBrokerNotReady", {'pooul_up{job="other"}': "1x10"}, "6m", [{}]),
    Case(
        "PooulIngressRejectingSignatures",
        {'pooul_ingress_requests_total{outcome="bad_signature",pod="a"}': "0+1x40"},
        "30m",
        [{}],
    ),
    Case(
        "PooulIngressRejectingSignatures",
        {'pooul_ingress_requests_total{outcome="success",pod="a"}': "0+100x40"},
        "30m",
    ),
    # Workers: liveness failed once in the last 10 minutes; a partition stalled.
    Case(
        "PooulWorkerNotLive",
        {'pooul_runtime_live{worker="trades",pod="a"}': "1 1 0 1x10"},
        "5m",
        [{"worker": "trades"}],
    ),
    Case("PooulWorkerNotLive", {'pooul_runtime_live{worker="trades",pod="a"}': "1x20"}, "15m"),
    Case(
        "PooulWorkerNotLive",
        {'pooul_runtime_live{worker="trades",pod="a"}': "1 1 0 1x20"},
        "15m",
    ),
    Case(
        "PooulWorkerPartitionStalled",
        {'pooul_runtime_partition_stalled{worker="orders",partition="3",pod="a"}': "0 0 1 0x5"},
        "4m",
        [{"worker": "orders", "partition": "3"}],
    ),
    Case(
        "PooulWorkerPartitionStalled",
        {'pooul_runtime_partition_stalled{worker="orders",partition="3",pod="a"}': "0x10"},
        "4m",
    ),
    # The breaker not closed (1 open, 2 half-open) at any scrape for 10 minutes.
    Case(
        "PooulPlatformUnavailable",
        {'pooul_runtime_circuit_state{worker="trades",pod="a"}': "0 1 2 1 2 1 2 1 2 1 2 1 2 1 2"},
        "13m",
        [{"worker": "trades"}],
    ),
    Case(
        "PooulPlatformUnavailable",
        {'pooul_runtime_circuit_state{worker="trades",pod="a"}': "1 1 1 1 0 1 1 1 1 1 1 1 1 1"},
        "13m",
    ),
    Case(
        "PooulWorkerFallingBehind",
        {'pooul_runtime_oldest_unfinished_age_seconds{worker="orders",pod="a"}': "400x20"},
        "15m",
        [{"worker": "orders"}],
    ),
    Case(
        "PooulWorkerFallingBehind",
        {'pooul_runtime_oldest_unfinished_age_seconds{worker="orders",pod="a"}': "400x5 10 400x14"},
        "15m",
    ),
    # Counters exist from start-up at 0, so their first step counts.
    Case(
        "PooulDeadLetters",
        {_DEAD_LETTERS: "0 0 1x5"},
        "4m",
        [{"worker": "orders"}],
    ),
    Case(
        "PooulDeadLetters",
        {_DEAD_LETTERS: "0 0 1x30"},
        "25m",
    ),
    Case(
        "PooulTradeFlagged",
        {'pooul_trades_mismatches_total{reason="amount_mismatch",pod="a"}': "0 0 1x5"},
        "4m",
        [{"reason": "amount_mismatch"}],
    ),
    Case(
        "PooulTradeFlagged",
        {'pooul_trades_mismatches_total{reason="amount_mismatch",pod="a"}': "0x10"},
        "4m",
    ),
    Case("PooulTradesGivenUp", {'pooul_trades_abandoned_total{pod="a"}': "0 0 1x5"}, "4m", [{}]),
    Case("PooulTradesGivenUp", {'pooul_trades_abandoned_total{pod="a"}': "0 0 1x90"}, "80m"),
    Case(
        "PooulTradesUnconfirmedPastNotifySpan",
        {'pooul_trades_pending_past_retry_span_total{pod="a"}': "0 0 3x5"},
        "4m",
        [{}],
    ),
    Case(
        "PooulTradesUnconfirmedPastNotifySpan",
        {'pooul_trades_pending_past_retry_span_total{pod="a"}': "0x10"},
        "4m",
    ),
    Case(
        "PooulTradesUnreadableState",
        {'pooul_trades_unreadable_states_total{pod="a"}': "0 0 1x5"},
        "4m",
        [{}],
    ),
    Case(
        "PooulTradesUnreadableState",
        {'pooul_trades_unreadable_states_total{pod="a"}': "0x10"},
        "4m",
    ),
    # Sustained disagreement: 6 a minute (0.1/s) for 10 minutes, against 1 a minute.
    Case(
        "PooulNotifyQueryDisagreements",
        {'pooul_trades_notify_query_disagreements_total{pod="a"}': "0+6x40"},
        "25m",
        [{}],
    ),
    Case(
        "PooulNotifyQueryDisagreements",
        {'pooul_trades_notify_query_disagreements_total{pod="a"}': "0+1x40"},
        "25m",
    ),
]


def _rules() -> dict[str, dict[str, Any]]:
    [document] = load_all(K8S / "monitoring" / "prometheusrule.yaml")
    return {r["alert"]: r for group in document["spec"]["groups"] for r in group["rules"]}


def _rendered(template: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus renders it for these labels (the rules use no other
    template feature than `{{ $labels.name }}`; anything else fails here)."""
    text = _LABEL_REF.sub(lambda m: labels[m.group(1)], template)
    assert "{{" not in text, f"a template feature this test does not render: {template!r}"
    return text


def _unit_test(case: Case, rule: dict[str, Any]) -> dict[str, Any]:
    expected = []
    for labels in case.fires:
        expected.append(
            {
                "exp_labels": {**labels, **rule.get("labels", {})},
                "exp_annotations": {
                    name: _rendered(text, labels) for name, text in rule["annotations"].items()
                },
            }
        )
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
        "alert_rule_test": [
            {"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}
        ],
    }


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _write_rules(directory: Path) -> Path:
    [document] = load_all(K8S / "monitoring" / "prometheusrule.yaml")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": document["spec"]["groups"]}, sort_keys=False))
    return path


def test_the_rules_load_in_prometheus(tmp_path: Path) -> None:
    """What the Prometheus Operator hands to Prometheus parses, every expression included."""
    _write_rules(tmp_path)
    result = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    alerts = set(_rules())
    assert {c.alert for c in CASES if c.fires} == alerts
    assert {c.alert for c in CASES if not c.fires} == alerts


def test_each_alert_fires_on_its_series_with_its_texts_and_not_on_near_misses(
    tmp_path: Path,
) -> None:
    rules = _rules()
    _write_rules(tmp_path)
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [_unit_test(case, rules[case.alert]) for case in CASES],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
