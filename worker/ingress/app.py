"""The ingress aiohttp application: the `notify_url` endpoint plus health, readiness and metrics.

    app = create_app(settings=settings)          # run it with IngressServer or web.run_app

Routes:
- `POST /pooul/notify` → `success` (200, text/plain) only once the record is acknowledged with
  acks=all; otherwise `fail` with 400/403/404/408/413 (bad notify, never enqueued) or 503/500
  (the platform retries). See docs/ingress.md for the table.
- `GET /healthz` (the process answers), `GET /readyz` (broker reachable, topic known, not
  draining), `GET /metrics` (Prometheus text).

The producer and the broker watch live in a `cleanup_ctx`, so they start before the first request
and are flushed and closed after the last in-flight request finished or was cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from worker.ingress.errors import NotifyRejected, PublishError, Reason
from worker.ingress.metrics import CONTENT_TYPE, IngressMetrics
from worker.ingress.notify import VerifiedNotify, build_record, verify_notify
from worker.ingress.producer import SignalPublisher
from worker.ingress.readiness import BrokerWatch
from worker.kafka import make_producer
from worker.logs import log_line
from worker.settings import Settings

__all__ = [
    "METRICS_KEY",
    "NOTIFY_PATH",
    "PUBLISHER_KEY",
    "SETTINGS_KEY",
    "STATE_KEY",
    "WATCH_KEY",
    "IngressState",
    "create_app",
]

log = logging.getLogger("worker.ingress")

NOTIFY_PATH = "/pooul/notify"
_SUCCESS = b"success"
_FAIL = b"fail"
_MAX_BATCH_BYTES = 256 * 1024


@dataclass
class IngressState:
    """Mutable per-app state: `draining` turns /readyz off as soon as shutdown begins."""

    draining: bool = False


SETTINGS_KEY = web.AppKey("ingress_settings", Settings)
METRICS_KEY = web.AppKey("ingress_metrics", IngressMetrics)
STATE_KEY = web.AppKey("ingress_state", IngressState)
PUBLISHER_KEY = web.AppKey("ingress_publisher", SignalPublisher)
WATCH_KEY = web.AppKey("ingress_broker_watch", BrokerWatch)


def create_app(*, settings: Settings, metrics: IngressMetrics | None = None) -> web.Application:
    """Build the app; Kafka connections open when it starts (`AppRunner.setup`)."""
    max_body = settings.pooul_ingress_max_body_bytes
    app = web.Application(client_max_size=max_body)
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics if metrics is not None else IngressMetrics()
    app[STATE_KEY] = IngressState()
    app.cleanup_ctx.append(_kafka)
    app.on_shutdown.append(_start_draining)
    notify = _NotifyHandler(settings=settings, metrics=app[METRICS_KEY])
    app.router.add_post(NOTIFY_PATH, notify.handle)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    """One shared acks=all producer and the broker watch that feeds /readyz."""
    settings = app[SETTINGS_KEY]
    metrics = app[METRICS_KEY]
    topic = settings.pooul_topic_trade_signals
    ack_timeout = settings.pooul_ingress_ack_timeout
    # A record not acknowledged by the deadline belongs to a request that got 503 and will be
    # retried by the platform: let aiokafka expire it then instead of retrying it for 40 s.
    producer = make_producer(
        settings,
        request_timeout_ms=max(1, math.ceil(ack_timeout * 1000)),
        # Room for a whole burst of ~1 KiB notifies per partition in one batch (default 16 KiB).
        max_batch_size=_MAX_BATCH_BYTES,
        # The publisher lingers per partition itself (KAFKA_LINGER_MS); no second wait inside.
        linger_ms=0,
    )
    watch = BrokerWatch(
        client=producer.client,
        topic=topic,
        interval=settings.pooul_ingress_ready_interval,
        timeout=ack_timeout,
        metrics=metrics,
    )
    publisher = SignalPublisher(
        producer=producer,
        topic=topic,
        ack_timeout=ack_timeout,
        linger=settings.kafka_linger_ms / 1000,
        metrics=metrics,
        on_failure=watch.poke,
        flush_timeout=ack_timeout + 1.0,
    )
    async with publisher, watch:
        app[PUBLISHER_KEY] = publisher
        app[WATCH_KEY] = watch
        if not watch.ready:
            log.warning(
                "ingress started but the broker is not ready", extra={"reason": watch.reason}
            )
        yield


async def _start_draining(app: web.Application) -> None:
    app[STATE_KEY].draining = True


class _NotifyHandler:
    """`POST /pooul/notify`: read (capped) → verify → produce (acks=all) → `success`."""

    def __init__(self, *, settings: Settings, metrics: IngressMetrics) -> None:
        self._keys = settings.merchant_keys
        self._max_body = settings.pooul_ingress_max_body_bytes
        self._read_timeout = settings.pooul_ingress_read_timeout
        self._metrics = metrics

    async def handle(self, request: web.Request) -> web.Response:
        metrics = self._metrics
        metrics.requests_in_flight += 1
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        notify: VerifiedNotify | None = None
        outcome = "internal_error"
        status = 500
        extra: dict[str, Any] = {}  # the log line's fields before outcome, status, peer, duration
        try:
            body = self._buffered_body(request)
            if body is None:
                body = await self._read_body(request)
            notify = verify_notify(body, keys=self._keys)
            await request.app[PUBLISHER_KEY].publish(build_record(notify, received_at=received_at))
            outcome, status = "success", 200
        except NotifyRejected as exc:
            outcome, status = exc.reason, exc.status
            extra = {"trade_id": exc.trade_id, "merchant_id": exc.merchant_id, "detail": exc.detail}
        except PublishError as exc:
            outcome, status = exc.reason, exc.status
            extra = {"detail": str(exc)}
        except asyncio.CancelledError:
            outcome = "cancelled"  # the shutdown grace ran out
            raise
        except Exception:
            log.exception("notify handler failed")
        finally:
            metrics.requests_in_flight -= 1
            metrics.outcome(outcome)
            # The one line per notify: ids (claimed ones for rejections), outcome, never a secret.
            if notify is not None:
                extra["trade_id"], extra["merchant_id"] = notify.trade_id, notify.merchant_id
            extra["outcome"] = outcome
            extra["status"] = status
            extra["peer"] = request.remote
            extra["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
            log_line(log, logging.INFO if status == 200 else logging.WARNING, "notify", extra)
        if status == 200:
            return web.Response(body=_SUCCESS, content_type="text/plain", charset="utf-8")
        return web.Response(status=status, body=_FAIL, content_type="text/plain", charset="utf-8")

    def _buffered_body(self, request: web.Request) -> bytes | None:
        """The raw body if it is already fully buffered (the usual case: one small packet), else
        None; whatever the Content-Type says, and never more than the cap."""
        declared = request.content_length
        if declared is not None and declared > self._max_body:
            raise NotifyRejected(
                Reason.BODY_TOO_LARGE, f"Content-Length {declared} > {self._max_body}"
            )
        content = request.content
        if not content.is_eof():
            return None
        body = content.read_nowait()
        if len(body) > self._max_body:
            raise NotifyRejected(Reason.BODY_TOO_LARGE, f"body > {self._max_body}")
        return body

    async def _read_body(self, request: web.Request) -> bytes:
        """The rest of a body still arriving, within the read timeout and the cap."""
        content = request.content
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._read_timeout):
                while chunk := await content.readany():
                    size += len(chunk)
                    if size > self._max_body:
                        raise NotifyRejected(Reason.BODY_TOO_LARGE, f"body > {self._max_body}")
                    chunks.append(chunk)
        except TimeoutError:
            raise NotifyRejected(
                Reason.READ_TIMEOUT, f"body not received within {self._read_timeout:g} s"
            ) from None
        except ConnectionError:
            # The sender hung up mid-body (a network hiccup, not a bug): it will deliver again.
            raise NotifyRejected(
                Reason.CLIENT_GONE, f"connection closed after {size} body bytes"
            ) from None
        return b"".join(chunks)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def _readyz(request: web.Request) -> web.Response:
    app = request.app
    if app[STATE_KEY].draining:
        ready, reason = False, "shutting down"
    elif WATCH_KEY not in app:
        ready, reason = False, "starting"
    else:
        watch = app[WATCH_KEY]
        ready, reason = watch.ready, watch.reason
    return web.Response(
        status=200 if ready else 503,
        body=orjson.dumps({"ready": ready, "reason": reason}),
        content_type="application/json",
    )


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS_KEY].exposition(), headers={"Content-Type": CONTENT_TYPE}
    )
