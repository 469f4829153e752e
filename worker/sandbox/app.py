"""The sandbox's aiohttp application and `SandboxServer`, the in-process way to run it.

    async with SandboxServer(settings=settings, time_scale=0.001) as sandbox:
        settings = settings.model_copy(update={"pooul_base_url": sandbox.url})
        ...                                   # talk to it like to the platform

Merchants and keys come from `settings.merchant_keys` (`POOUL_MERCHANT_KEYS`).
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from worker.sandbox import control, gateway
from worker.sandbox.core import SANDBOX_KEY, Sandbox
from worker.settings import Settings

__all__ = ["SandboxServer", "build_app"]

# Requests still running at shutdown (hangs are woken first) get this long to finish.
_SHUTDOWN_GRACE_SECONDS = 2.0


def build_app(sandbox: Sandbox) -> web.Application:
    """The gateway and control routes around one `Sandbox` (started/stopped by the caller)."""
    app = web.Application()
    app[SANDBOX_KEY] = sandbox
    app.add_routes(gateway.routes())
    app.add_routes(control.routes())
    return app


class SandboxServer:
    """A running local Pooul on `host:port` (port 0 picks a free one; read `.url` after start).

    Args:
        settings: the merchants and keys it knows (`settings.merchant_keys`).
        host: interface to bind.
        port: TCP port, 0 for any free port.
        time_scale: multiplies notify retry intervals (0.001 runs the 3-hour schedule in ~11 s).
        seed: makes fault draws and the random parts of ids reproducible.
        notify_timeout: seconds a merchant has to answer a notify; the platform's 5 s unless a
            test needs a slow-answer case to finish quickly.
        public_url: base URL of `pay_url` (the cashier page); None uses the address each pay
            call came in on.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        seed: int | None = None,
        notify_timeout: float = 5.0,
        public_url: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self.sandbox = Sandbox(
            merchant_keys=settings.merchant_keys,
            time_scale=time_scale,
            seed=seed,
            notify_timeout=notify_timeout,
            public_url=public_url,
            max_orders=settings.pooul_sandbox_max_orders,
        )
        self._runner: web.AppRunner | None = None
        self._started = False

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("sandbox not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL to use as `POOUL_BASE_URL`."""
        host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("a SandboxServer is started once")
        self._started = True
        await self.sandbox.start()
        runner = web.AppRunner(
            build_app(self.sandbox), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.sandbox.stop()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Cancel pending notifies, wake hanging calls, close the listener; twice is harmless."""
        await self.sandbox.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
