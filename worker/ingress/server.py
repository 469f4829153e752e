"""Running the ingress app on a socket, with a graceful stop.

    async with IngressServer(settings=settings, host="127.0.0.1", port=0) as server:
        server.url          # http://127.0.0.1:<port>
    # leaving: readiness off, listener closed, in-flight notifies finish within
    # POOUL_INGRESS_SHUTDOWN_GRACE (then are cancelled), producer flushed and closed

Used by `pooul-worker ingress`, by the tests and by the benchmark, so they all run the same thing.
"""

from __future__ import annotations

import logging
from types import TracebackType

from aiohttp import web

from worker.ingress.app import STATE_KEY, create_app
from worker.ingress.metrics import IngressMetrics
from worker.settings import Settings

__all__ = ["IngressServer"]

log = logging.getLogger("worker.ingress")


class IngressServer:
    """The ingress listening on `host:port` (port 0 picks a free one).

    - `settings`: keys, topic, limits and timeouts; `host`/`port` default to
      `POOUL_INGRESS_HOST`/`POOUL_INGRESS_PORT`.
    - `metrics`: pass one to read counters from outside (tests); a fresh registry otherwise.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._host = host if host is not None else settings.pooul_ingress_host
        self._port = port if port is not None else settings.pooul_ingress_port
        self.metrics = metrics if metrics is not None else IngressMetrics()
        self.app = create_app(settings=settings, metrics=self.metrics)
        self._runner: web.AppRunner | None = None
        self._started = False

    @property
    def port(self) -> int:
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("IngressServer is not running")
        port: int = self._runner.addresses[0][1]
        return port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Connect to Kafka, probe it, then listen (raises if no bootstrap server answers)."""
        if self._started:
            raise RuntimeError("IngressServer already started")
        self._started = True
        runner = web.AppRunner(
            self.app,
            access_log=None,  # the handler writes one structured line per notify instead
            handle_signals=False,
            shutdown_timeout=self._settings.pooul_ingress_shutdown_grace,
        )
        try:
            await runner.setup()
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Drain and close; a second call does nothing."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.app[STATE_KEY].draining = True
        cancelled_before = self.metrics.count("cancelled")
        log.info(
            "ingress draining",
            extra={
                "in_flight": int(self.metrics.in_flight_now()),
                "grace_seconds": self._settings.pooul_ingress_shutdown_grace,
            },
        )
        await runner.cleanup()
        log.info(
            "ingress stopped",
            extra={"cancelled": int(self.metrics.count("cancelled") - cancelled_before)},
        )

    async def __aenter__(self) -> IngressServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
