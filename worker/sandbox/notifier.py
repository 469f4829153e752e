"""The notify sender: POST signed notifications to `notify_url` on the platform's retry schedule.

A delivery succeeds only when the merchant answers the body `success` (any case, surrounding
whitespace ignored) within the answer deadline (5 s, the platform's rule). Otherwise the same
body is sent again after 15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600 seconds — 10 deliveries —
then the platform gives up. `time_scale` multiplies those intervals (0.001: 15 s → 15 ms); it
does not shrink the answer deadline, because a real ingress needs real milliseconds to answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from worker.pooul.signing import sign
from worker.sandbox.faults import Faults
from worker.sandbox.store import DeliveryAttempt, Notification, Order, Outcome
from worker.settings import MerchantKeys

__all__ = ["DELIVERIES", "RETRY_INTERVALS", "Notifier", "is_success_answer"]

log = logging.getLogger(__name__)

RETRY_INTERVALS: tuple[float, ...] = (15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600)
DELIVERIES = len(RETRY_INTERVALS) + 1
_BODY_EXCERPT = 200
_CONNECTIONS = 256


def is_success_answer(status: int, body: str) -> bool:
    """The platform's acknowledgement rule: the plain string `success`, any case; anything
    else counts as failure — so no surrounding whitespace, and HTTP 200 (stricter than the
    platform may be, never looser: what passes here passes there)."""
    return status == 200 and body.lower() == "success"


class Notifier:
    """Sends each notification on its own task; `stop()` cancels what is still pending.

    Args:
        merchant_keys: signing uses each merchant's newest key.
        faults: read at send time (duplicates, loss), so switching a fault applies at once.
        time_scale: multiplies every retry interval.
        answer_timeout: seconds the merchant has to answer one delivery (platform: 5).
    """

    def __init__(
        self,
        *,
        merchant_keys: MerchantKeys,
        faults: Faults,
        time_scale: float = 1.0,
        answer_timeout: float = 5.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._keys = merchant_keys
        self._faults = faults
        self._time_scale = time_scale
        self._timeout = aiohttp.ClientTimeout(total=answer_timeout)
        # Deliveries at once; a delivery's deadline starts once it has its connection, so a
        # burst queueing here is not taken for a slow merchant.
        self._slots = asyncio.Semaphore(_CONNECTIONS)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Notifications still being delivered (or waiting for their next retry)."""
        return len(self._tasks)

    async def start(self) -> None:
        if self._session is not None:
            raise RuntimeError("notifier already started")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # `_slots` bounds the connections
            headers={"User-Agent": "pooul-sandbox-notifier"},
        )

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def dispatch(self, order: Order, notification: Notification) -> None:
        """Start delivering `notification` (or lose it, when the loss fault says so)."""
        order.notifications.append(notification)
        if self._faults.hit(self._faults.for_merchant(order.merchant_id).notify_loss_rate):
            notification.status = "lost"
            self.outcomes["lost"] += 1
            log.info(
                "notify lost (fault)",
                extra={"trade_id": order.trade_id, "notification": notification.id},
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(order, notification), name=f"notify-{notification.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def envelope(self, merchant_id: str, data: dict[str, Any]) -> bytes:
        """The notify body: the platform's envelope, signed over `data` with the newest key."""
        key = self._keys.signing_key(merchant_id)
        if key is None:
            raise LookupError(f"no key for merchant {merchant_id}")
        return orjson.dumps(
            {
                "code": 0,
                "msg": None,
                "data": data,
                "version": "1.0",
                "sign_type": "md5",
                "sign": sign(data, key),
            }
        )

    async def _deliver(self, order: Order, notification: Notification) -> None:
        body = self.envelope(order.merchant_id, notification.data)
        try:
            for delivery in range(1, DELIVERIES + 1):
                if delivery > 1:
                    await asyncio.sleep(RETRY_INTERVALS[delivery - 2] * self._time_scale)
                copies = 1 + self._faults.for_merchant(order.merchant_id).notify_duplicates
                attempts = await asyncio.gather(
                    *(
                        self._post(order.notify_url, body, delivery=delivery, copy=copy)
                        for copy in range(copies)
                    )
                )
                notification.attempts.extend(attempts)
                if any(attempt.outcome == "success" for attempt in attempts):
                    notification.status = "delivered"
                    return
            notification.status = "gave_up"
            log.info(
                "notify gave up after every delivery",
                extra={"trade_id": order.trade_id, "deliveries": DELIVERIES},
            )
        except asyncio.CancelledError:
            notification.status = "cancelled"
            raise

    async def _post(self, url: str, body: bytes, *, delivery: int, copy: int) -> DeliveryAttempt:
        if self._session is None:
            raise RuntimeError("notifier not started")
        started_at = time.time()
        started = time.perf_counter()
        status: int | None = None
        answer = ""
        error: str | None = None
        outcome: Outcome
        try:
            async with (
                self._slots,
                self._session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    timeout=self._timeout,
                    allow_redirects=False,  # a redirect is not `success`
                ) as response,
            ):
                status = response.status
                answer = (await response.read()).decode("utf-8", errors="replace")
            outcome = "success" if is_success_answer(status, answer) else "rejected"
        except TimeoutError:
            outcome, error = "timeout", "no answer within the deadline"
        except aiohttp.ClientError as exc:
            outcome, error = "connection_error", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # e.g. a host the resolver cannot encode: still one failed try
            outcome, error = "connection_error", f"{type(exc).__name__}: {exc}"
        attempt = DeliveryAttempt(
            delivery=delivery,
            copy=copy,
            at=started_at,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            outcome=outcome,
            http_status=status,
            body=answer[:_BODY_EXCERPT],
            error=error,
        )
        self.outcomes[outcome] += 1
        log.debug(
            "notify attempt",
            extra={"url": url, "delivery": delivery, "copy": copy, "outcome": outcome},
        )
        return attempt
