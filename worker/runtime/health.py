"""A worker's small HTTP port: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).

Liveness is honest: it fails when a partition with pending records makes no progress for
POOUL_STALL_TIMEOUT (a consumer can stay connected yet stop consuming), when a handler call
hangs that long, or when the runtime failed. Readiness additionally needs an assignment and
every assigned partition's state restored.

    await run_worker(processor)       # serve health, run until SIGTERM/SIGINT, drain, commit
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.runtime.errors import UsageError
from worker.runtime.processor import StreamProcessor

__all__ = ["HealthServer", "run_worker"]

log = logging.getLogger(__name__)


class HealthServer:
    """Serves one processor's health and metrics on `host:port` (port 0 picks a free one)."""

    def __init__(self, *, processor: StreamProcessor, host: str, port: int) -> None:
        self._processor = processor
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        snap = self._processor.snapshot()
        body = {
            "status": "ok" if snap.live else "failing",
            "phase": snap.phase,
            "problems": snap.problems,
        }
        return web.json_response(body, status=200 if snap.live else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        snap = self._processor.snapshot()
        body = {
            "status": "ready" if snap.ready else "not_ready",
            "phase": snap.phase,
            "assigned": snap.assigned,
            "restoring": snap.restoring,
            "problems": snap.problems,
        }
        return web.json_response(body, status=200 if snap.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        payload = generate_latest(self._processor.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        if self._started:
            raise UsageError("HealthServer.start() may be called once")
        self._started = True
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = self._runner.addresses
        if sockets:
            self.port = int(sockets[0][1])
        log.info("health server listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def run_worker(
    processor: StreamProcessor,
    *,
    host: str | None = None,
    port: int | None = None,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Serve health/metrics, run `processor` until a stop signal, then drain, commit and close.

    The first SIGTERM/SIGINT stops fetching and drains for POOUL_SHUTDOWN_GRACE; the health
    server stays up until the processor has stopped. Host/port default to
    POOUL_WORKER_HOST/POOUL_WORKER_PORT. Re-raises what made the processor fail.
    """
    settings = processor.settings
    loop = asyncio.get_running_loop()
    server = HealthServer(
        processor=processor,
        host=settings.pooul_worker_host if host is None else host,
        port=settings.pooul_worker_port if port is None else port,
    )
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        log.info("stop signal received", extra={"signal": sig.name, "worker": processor.name})
        processor.request_stop()

    async with server:
        for sig in stop_signals:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        try:
            async with processor:
                await processor.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
