"""The notify ingress: Pooul's only door in. Verified notifies go to Kafka, acks=all, then `success`.

- `notify` — the pure verification pipeline (parse, key, signature, fields → record).
- `producer` — `SignalPublisher`, the shared acks=all producer with a deadline.
- `readiness` — `BrokerWatch`, the broker probe behind `/readyz`.
- `app` / `server` — the aiohttp app and `IngressServer` that runs it with a graceful stop.
- `cli` — `pooul-worker ingress`.

Names are imported lazily so `pooul-worker --help` does not pay for aiohttp and aiokafka.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.ingress.app import create_app
    from worker.ingress.errors import (
        IngressError,
        NotifyRejected,
        PublishError,
        PublishTimeout,
        Reason,
    )
    from worker.ingress.metrics import IngressMetrics
    from worker.ingress.notify import SignalRecord, VerifiedNotify, build_record, verify_notify
    from worker.ingress.producer import SignalPublisher
    from worker.ingress.readiness import BrokerWatch
    from worker.ingress.server import IngressServer

__all__ = [
    "BrokerWatch",
    "IngressError",
    "IngressMetrics",
    "IngressServer",
    "NotifyRejected",
    "PublishError",
    "PublishTimeout",
    "Reason",
    "SignalPublisher",
    "SignalRecord",
    "VerifiedNotify",
    "build_record",
    "create_app",
    "verify_notify",
]

_HOME = {
    "create_app": "app",
    "IngressError": "errors",
    "NotifyRejected": "errors",
    "PublishError": "errors",
    "PublishTimeout": "errors",
    "Reason": "errors",
    "IngressMetrics": "metrics",
    "SignalRecord": "notify",
    "VerifiedNotify": "notify",
    "build_record": "notify",
    "verify_notify": "notify",
    "SignalPublisher": "producer",
    "BrokerWatch": "readiness",
    "IngressServer": "server",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'worker.ingress' has no attribute {name!r}")
    return getattr(importlib.import_module(f"worker.ingress.{module}"), name)
