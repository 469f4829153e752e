"""A faithful local Pooul gateway: pay/query/close with real signing, a notify sender on the
platform's retry schedule, a control API to play the buyer and the channel, fault injection.

    async with SandboxServer(settings=settings, time_scale=0.001) as sandbox:
        print(sandbox.url)        # POOUL_BASE_URL for the code under test

Run it standalone with `pooul-worker sandbox --port 8090`; see docs/sandbox.md.
"""

from worker.sandbox.app import SandboxServer, build_app
from worker.sandbox.core import Sandbox, TransitionError
from worker.sandbox.faults import FaultConfig, Faults
from worker.sandbox.notifier import DELIVERIES, RETRY_INTERVALS, Notifier, is_success_answer
from worker.sandbox.store import DeliveryAttempt, Notification, Order, OrderStore

__all__ = [
    "DELIVERIES",
    "RETRY_INTERVALS",
    "DeliveryAttempt",
    "FaultConfig",
    "Faults",
    "Notification",
    "Notifier",
    "Order",
    "OrderStore",
    "Sandbox",
    "SandboxServer",
    "TransitionError",
    "build_app",
    "is_success_answer",
]
