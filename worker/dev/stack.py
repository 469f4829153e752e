"""The local stack: embedded broker, topics, sandbox, ingress, orders and trades workers.

Every role is a child process (`python -m worker <role>`) sharing one environment: generated
merchant keys, the broker's address, the sandbox as `POOUL_BASE_URL`, the ingress as
`POOUL_NOTIFY_URL`, and short reconcile/expiry times so a demo sees every outcome in seconds.
Start order: broker → topics → the other roles together; stop order: workers, ingress, sandbox,
the broker last.

    async with DevStack(settings=settings, options=StackOptions()) as stack:
        print(stack.endpoints)
        await stack.watch(stop_event)       # raises ChildExited if a role dies
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from worker.broker import EMBEDDED_FETCH_MAX_WAIT_MS, broker_binary, free_port
from worker.dev.processes import ChildProcess, port_is_free, wait_ready
from worker.settings import Settings
from worker.topics import create_topics

__all__ = ["DEMO_MERCHANTS", "ROLES", "DevStack", "Endpoints", "StackOptions"]

# Three demo merchants so the sandbox can treat their notifies differently (faults are per
# merchant): one plain, one whose notifies are lost, one whose notifies arrive several times.
DEMO_MERCHANTS: tuple[str, ...] = ("888100000000101", "888100000000102", "888100000000103")

# Roles started after the broker, in start order; stopped in reverse.
ROLES: tuple[str, ...] = ("sandbox", "ingress", "orders", "trades")
_WORKERS = frozenset({"orders", "trades"})  # stopped first, before what they call
# A real cluster's client settings (setting names, lower case): never taken from the shell into
# the embedded stack, which is plaintext, single-node and rejects aiokafka's idempotent producer.
_CLUSTER_SETTINGS = ("kafka_", "pooul_topic_replication_factor")


@dataclass(frozen=True, slots=True)
class StackOptions:
    """Knobs of the dev stack; the defaults make a demo finish in seconds.

    `time_scale` multiplies the sandbox's notify retry intervals; `reconcile_schedule` is the
    trades worker's query schedule for silent trades; `close_grace` the seconds after expiry
    before an unpaid trade is closed.
    """

    time_scale: float = 0.01
    reconcile_schedule: str = "1,1,2,2"
    reconcile_interval_max: float = 3.0
    close_grace: float = 1.0
    seed: int | None = None
    ready_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running stack can be reached."""

    bootstrap_servers: str
    sandbox_url: str
    notify_url: str
    health_urls: dict[str, str]
    metrics_urls: dict[str, str]

    def lines(self) -> list[str]:
        rows = [
            ("kafka", self.bootstrap_servers),
            ("sandbox", f"{self.sandbox_url}  (control API under /sandbox/, cashier pages)"),
            ("ingress", self.notify_url),
        ]
        rows += [(f"{name} ready", url) for name, url in self.health_urls.items()]
        rows += [(f"{name} metrics", url) for name, url in self.metrics_urls.items()]
        return [f"  {name:16} {value}" for name, value in rows]


def _pick_port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


class DevStack:
    """Starts and stops the local stack; see the module docstring for what runs.

    Args:
        settings: the invoking process's settings (topic names, partitions, dev directory and
            the preferred ports come from here; merchant keys are generated per run).
        options: demo-friendly timings.
    """

    def __init__(self, *, settings: Settings, options: StackOptions) -> None:
        self._options = options
        self.merchant_keys = {m: secrets.token_hex(16) for m in DEMO_MERCHANTS}
        self._log_dir = Path(settings.pooul_dev_dir) / "logs"
        self._grace = settings.pooul_dev_stop_grace
        self._broker_port = _pick_port(settings.pooul_dev_broker_port)
        self._sandbox_port = _pick_port(settings.pooul_sandbox_port)
        self._ingress_port = _pick_port(settings.pooul_ingress_port)
        self._health_ports = {name: free_port() for name in ("orders", "trades")}
        bootstrap = f"127.0.0.1:{self._broker_port}"
        self.endpoints = Endpoints(
            bootstrap_servers=bootstrap,
            sandbox_url=f"http://127.0.0.1:{self._sandbox_port}",
            notify_url=f"http://127.0.0.1:{self._ingress_port}/pooul/notify",
            health_urls={
                "sandbox": f"http://127.0.0.1:{self._sandbox_port}/sandbox/health",
                "ingress": f"http://127.0.0.1:{self._ingress_port}/readyz",
                **{n: f"http://127.0.0.1:{p}/readyz" for n, p in self._health_ports.items()},
            },
            metrics_urls={
                "ingress": f"http://127.0.0.1:{self._ingress_port}/metrics",
                **{n: f"http://127.0.0.1:{p}/metrics" for n, p in self._health_ports.items()},
            },
        )
        self.env = self._child_env(settings)
        # The settings every in-process client of the stack (topics, demo) uses.
        # The settings the children do not inherit take their defaults here too, not this
        # process's environment.
        values: dict[str, Any] = {
            name: field.get_default(call_default_factory=True)
            for name, field in Settings.model_fields.items()
            if name.startswith(_CLUSTER_SETTINGS)
        }
        values.update(
            (k.lower(), v) for k, v in self.env.items() if k.lower() in Settings.model_fields
        )
        self.settings = Settings(**values, pooul_merchant_keys_file=None)
        self._broker = ChildProcess(
            name="broker",
            argv=[
                str(broker_binary()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self._broker_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self._broker_port}",
            ],
            env={**self.env, "RUST_LOG": "warn"},
            log_path=self._log_dir / "broker.log",
        )
        self._children = [self._role(name) for name in ROLES]
        self._started = False

    def _child_env(self, settings: Settings) -> dict[str, str]:
        options = self._options
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.lower().startswith(("pooul_merchant_keys", *_CLUSTER_SETTINGS))
        }
        return {
            "POOUL_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": self.endpoints.bootstrap_servers,
            "POOUL_MERCHANT_KEYS": orjson.dumps(self.merchant_keys).decode(),
            "POOUL_BASE_URL": self.endpoints.sandbox_url,
            "POOUL_NOTIFY_URL": self.endpoints.notify_url,
            "POOUL_TOPIC_PARTITIONS": str(settings.pooul_topic_partitions),
            "POOUL_LOG_FORMAT": "json",
            "POOUL_SANDBOX_HOST": "127.0.0.1",
            "POOUL_SANDBOX_PORT": str(self._sandbox_port),
            "POOUL_SANDBOX_TIME_SCALE": str(options.time_scale),
            "POOUL_INGRESS_HOST": "127.0.0.1",
            "POOUL_INGRESS_PORT": str(self._ingress_port),
            "POOUL_RECONCILE_SCHEDULE": options.reconcile_schedule,
            "POOUL_RECONCILE_INTERVAL_MAX": str(options.reconcile_interval_max),
            "POOUL_CLOSE_GRACE": str(options.close_grace),
        }

    def _role(self, name: str) -> ChildProcess:
        argv = [sys.executable, "-m", "worker", name]
        env = dict(self.env)
        if name == "sandbox" and self._options.seed is not None:
            argv += ["--seed", str(self._options.seed)]
        if name in self._health_ports:
            env["POOUL_WORKER_HOST"] = "127.0.0.1"
            env["POOUL_WORKER_PORT"] = str(self._health_ports[name])
        return ChildProcess(name=name, argv=argv, env=env, log_path=self._log_dir / f"{name}.log")

    @property
    def processes(self) -> list[ChildProcess]:
        """Every child, the broker first."""
        return [self._broker, *self._children]

    @property
    def log_dir(self) -> Path:
        return self._log_dir

    async def start(self) -> None:
        """Broker, topics, then every role; raises (after stopping what started) on failure."""
        if self._started:
            raise RuntimeError("a DevStack is started once")
        self._started = True
        if self._log_dir.exists():
            shutil.rmtree(self._log_dir)
        try:
            self._broker.start()
            await wait_ready(
                self._broker, tcp_port=self._broker_port, within=self._options.ready_timeout
            )
            await create_topics(self.settings)
            for child in self._children:
                child.start()
            await asyncio.gather(
                *(
                    wait_ready(
                        child,
                        http_url=self.endpoints.health_urls[child.name],
                        within=self._options.ready_timeout,
                    )
                    for child in self._children
                )
            )
        except BaseException:
            await self.stop()
            raise

    async def watch(self, stop: asyncio.Event) -> None:
        """Return when `stop` is set; raise `ChildExited` as soon as any child dies."""
        while not stop.is_set():
            for child in self.processes:
                child.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)

    def check(self) -> None:
        """Raise `ChildExited` if any child is gone."""
        for child in self.processes:
            child.check()

    async def stop(self) -> list[str]:
        """Stop the workers, then the ingress and sandbox (each wave in parallel, SIGTERM then
        SIGKILL), then the broker; twice is harmless. The workers drain first, while the
        sandbox they query and the broker they commit to are still there.

        Returns the names of children still running afterwards (empty unless a kill failed).
        """
        workers = [child for child in self._children if child.name in _WORKERS]
        edge = [child for child in self._children if child.name not in _WORKERS]
        for wave in (workers, edge):
            await asyncio.gather(
                *(child.stop(grace=self._grace) for child in wave), return_exceptions=True
            )
        await self._broker.stop(grace=self._grace)
        return [child.name for child in self.processes if child.running]

    def kill_now(self) -> None:
        for child in self.processes:
            child.kill_now()

    async def __aenter__(self) -> DevStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
