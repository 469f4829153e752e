"""docs/operations.md documents every Prometheus metric the processes register, and no other.

To refresh the table after adding a metric: `python -m tests.test_metrics_docs` prints it.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from worker.ingress.metrics import IngressMetrics
from worker.orders.metrics import OrdersMetrics
from worker.runtime.metrics import PartitionSnapshot, RuntimeMetrics, RuntimeSnapshot
from worker.trades.metrics import TradesMetrics

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def registered() -> list[tuple[str, str, str, str]]:
    """(process, name, type, help) of every metric family, gauges read at scrape time included."""
    families: list[tuple[str, str, str, str]] = []
    ingress = IngressMetrics(registry=CollectorRegistry())
    orders_registry = CollectorRegistry()
    OrdersMetrics(registry=orders_registry)
    trades = TradesMetrics(registry=CollectorRegistry())
    runtime_registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry=runtime_registry, worker="trades")
    partition = PartitionSnapshot(0, True, 0, 0.0, 0, 0, 0, False)
    runtime.watch(lambda: RuntimeSnapshot("running", 0, 1, 0, True, False, [partition]))
    for process, registry in (
        ("ingress", ingress.registry),
        ("orders", orders_registry),
        ("trades", trades.registry),
        ("orders, trades", runtime_registry),
    ):
        families += [(process, f.name, f.type, f.documentation) for f in registry.collect()]
    return families


def render_table() -> str:
    lines = ["| metric | type | process | meaning |", "|---|---|---|---|"]
    for process, name, kind, documentation in sorted(registered(), key=lambda f: f[1]):
        meaning = documentation.rstrip(".").replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | {process} | {meaning} |")
    return "\n".join(lines)


def test_every_registered_metric_is_documented() -> None:
    """Each metric family of the ingress, workers and runtime has a row in docs/operations.md."""
    text = OPERATIONS.read_text(encoding="utf-8")
    missing = [name for _, name, _, _ in registered() if f"| `{name}` |" not in text]
    assert not missing, f"undocumented metrics {missing}; run `python -m tests.test_metrics_docs`"


def test_no_documented_metric_is_gone() -> None:
    """Every metric row in docs/operations.md names a metric that still exists."""
    text = OPERATIONS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(pooul_[a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented, "the metrics table is missing from docs/operations.md"
    gone = documented - {name for _, name, _, _ in registered()}
    assert not gone, f"documented metrics that no process registers: {sorted(gone)}"


if __name__ == "__main__":
    print(render_table())
