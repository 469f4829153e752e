"""The orders worker's handler: one order request in, one order result out.

Per request (the runtime serialises calls per key = `mch_trade_id`):

1. not a JSON object → `Permanent` (dead-letter topic); contract broken → `rejected`;
2. this merchant's order for the key is in the state → the same `created` (or a `conflict`
   when the amount or terms differ), no platform call — unless the order's expiry has passed:
   then one query, and a `conflict` if it ended unpaid (closed, failed, revoked, reversed);
3. otherwise unified order with the request's own `mch_trade_id` — a retry never makes a new
   one. 107 means an earlier attempt reached the platform: query it and answer `created` with
   its ids when merchant and amount match, else a `conflict`;
4. after `created`: the order-created signal (trade-signals, key `trade_id`), then the state,
   then the result — so a result seen upstream always has its signal, and a state entry
   always means its signal was written.

Transport failures (connection, 5xx, timeout) raise `RemoteUnavailable`: the circuit breaker
takes over and the record is never given up on. Retryable codes, unverifiable answers and
verified answers without the promised shape (`MalformedResponse`) raise
`Retry` until the last attempt, which answers `failed` (`retries_exhausted`, retryable). Other
codes answer `failed` at once (`platform_refused`): one call, no retry storm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from schemas.codes import ResultCode
from schemas.orders import OrderCreated, OrderFailed, OrderRejected, OrderRequest
from schemas.pooul import OrderResponseData, QueryData
from schemas.signals import REQUEST_ID_HEADER
from worker.orders.decisions import (
    Conflict,
    check_late_repeat,
    check_repeat,
    new_order,
    recover_order,
    response_mismatch,
)
from worker.orders.metrics import OrdersMetrics
from worker.orders.requests import (
    Invalid,
    Unparseable,
    decode_payload,
    expiry_error,
    to_unified_order,
    validate_request,
)
from worker.orders.results import (
    created_result,
    created_signal,
    encode_result,
    encode_signal,
    failed_result,
    rejected_for,
    rejected_result,
)
from worker.orders.state import StoredOrder, find_order, retain_until, with_order
from worker.pooul import PooulClient
from worker.pooul.errors import (
    DuplicateOrder,
    MalformedResponse,
    OrderNotFound,
    PlatformError,
    PooulError,
    PooulTimeout,
    RequestRefused,
    ResponseSignatureError,
    RetryablePlatformError,
    TransportError,
)
from worker.runtime import (
    KeyContext,
    Permanent,
    Record,
    RemoteRefused,
    RemoteUnavailable,
    Retry,
    is_last_attempt,
)
from worker.settings import Settings

__all__ = ["OrdersHandler"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_Result = OrderCreated | OrderRejected | OrderFailed


class _Failed(Exception):
    """Internal: the attempt ends with this `failed` result (not an error of the record)."""

    def __init__(self, result: OrderFailed) -> None:
        super().__init__(result.msg)
        self.result = result


# Orders created but not yet in the state: only ever a few (those whose writes are failing).
_UNSAVED_CAP = 10_000


class OrdersHandler:
    """Turns order requests into unified orders; one instance per worker process.

    Keyword arguments:
    - `client`: a started `PooulClient` (the handler does not own it).
    - `settings`: topics, `POOUL_NOTIFY_URL`, merchants, `POOUL_ORDER_DEFAULT_TTL`,
      `POOUL_ORDERS_STATE_RETENTION`, `POOUL_MAX_ATTEMPTS`.
    - `metrics`: where outcomes, latencies, retries and conflicts are counted.
    - `clock`: Unix seconds (tests may pin it).
    """

    def __init__(
        self,
        *,
        client: PooulClient,
        settings: Settings,
        metrics: OrdersMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._merchants = frozenset(settings.merchant_keys.merchants())
        self._notify_url = settings.pooul_notify_url
        self._results_topic = settings.pooul_topic_order_results
        self._signals_topic = settings.pooul_topic_trade_signals
        self._default_ttl = settings.pooul_order_default_ttl
        self._retention = settings.pooul_orders_state_retention
        self._max_attempts = settings.pooul_max_attempts
        self._metrics = metrics
        self._clock = clock
        # Orders the platform created whose state write has not happened yet (a Kafka write
        # after the pay call failed): the retry answers with this, not a second pay call, which
        # gets 107 and a query that may not carry the pay link. Oldest dropped past the cap.
        self._unsaved: dict[tuple[str, str], StoredOrder] = {}

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        """One order request: a result always, a dead letter only for a non-object value."""
        requested_at = record.timestamp_ms / 1000 if record.timestamp_ms > 0 else None
        try:
            payload = decode_payload(record.value)
        except Unparseable as exc:
            raise Permanent("unparseable_order_request", str(exc)) from None
        outcome = validate_request(
            payload,
            key=record.key,
            header_request_id=record.header(REQUEST_ID_HEADER),
            known_merchants=self._merchants,
            default_notify_url=self._notify_url,
        )
        if isinstance(outcome, Invalid):
            key = record.key if record.key is not None else _encode(outcome.mch_trade_id)
            result = rejected_result(outcome, requested_at=requested_at, now=self._clock())
            await self._answer(ctx, key, result, path="validation")
            return
        await self._order(outcome, ctx, requested_at=requested_at)

    async def on_timer(self, ctx: KeyContext) -> None:
        """Nothing to do: the orders worker never sets `wake_at` on its state."""

    async def _order(
        self, request: OrderRequest, ctx: KeyContext, *, requested_at: float | None
    ) -> None:
        key = request.mch_trade_id.encode()
        stored = find_order(ctx.state, request.merchant_id)
        if stored is not None:
            try:
                answer = await self._repeat(request, stored, ctx, requested_at=requested_at)
            except _Failed as failed:
                answer = failed.result
            reason = "repeat" if isinstance(answer, OrderCreated) else answer.reason
            await self._answer(ctx, key, answer, path=reason)
            return

        expired = expiry_error(request, now=self._clock())
        try:
            if expired is None:
                order, path = await self._create(request, ctx, requested_at=requested_at)
            else:
                found = await self._created_before_expiry(request, ctx, requested_at=requested_at)
                if found is None:
                    rejected = rejected_for(
                        request, [expired], requested_at=requested_at, now=self._clock()
                    )
                    await self._answer(ctx, key, rejected, path="validation")
                    return
                order, path = found, "recovered"
        except _Failed as failed:
            await self._answer(ctx, key, failed.result, path=failed.result.reason)
            return

        unsaved = (request.merchant_id, request.mch_trade_id)
        self._unsaved[unsaved] = order
        while len(self._unsaved) > _UNSAVED_CAP:
            del self._unsaved[next(iter(self._unsaved))]
        signal_value, signal_headers = encode_signal(created_signal(request, order))
        await ctx.send(
            self._signals_topic,
            signal_value,
            key=order.trade_id.encode(),
            headers=signal_headers,
        )
        state = with_order(ctx.state, request.merchant_id, order)
        await ctx.set_state(state, expires_at=retain_until(state, retention=self._retention))
        self._unsaved.pop(unsaved, None)
        result = created_result(request, order, requested_at=requested_at, now=self._clock())
        await self._answer(ctx, key, result, path=path)

    async def _repeat(
        self,
        request: OrderRequest,
        stored: StoredOrder,
        ctx: KeyContext,
        *,
        requested_at: float | None,
    ) -> OrderCreated | OrderFailed:
        """The answer to a repeat of an order this worker created."""
        conflict = check_repeat(stored, request)
        if conflict is not None:
            return self._conflict(request, conflict, requested_at=requested_at, source="state")
        if stored.expires_at <= self._clock():
            # Its pay_url may be dead: ask the platform whether the order ended unpaid.
            try:
                existing = await self._query_existing(request)
            except TransportError as exc:
                # An outage holds the answer (behind the breaker) rather than guess.
                raise self._steer(exc, request, ctx, requested_at=requested_at) from None
            except PooulError as exc:
                # 301 (the platform forgets old orders), a refusal or an unverifiable answer:
                # no word on the order, so the state answers, as before the order expired.
                log.warning(
                    "expired order not confirmed by the platform; answered from state",
                    extra={
                        "mch_trade_id": request.mch_trade_id,
                        "trade_id": stored.trade_id,
                        "error": str(exc),
                    },
                )
            else:
                conflict = check_late_repeat(stored, request, existing)
                if conflict is not None:
                    return self._conflict(
                        request, conflict, requested_at=requested_at, source="platform"
                    )
        return created_result(request, stored, requested_at=requested_at, now=self._clock())

    async def _create(
        self, request: OrderRequest, ctx: KeyContext, *, requested_at: float | None
    ) -> tuple[StoredOrder, str]:
        """The platform order for `request`: created now (or by an earlier attempt of this
        process whose writes failed), or recovered after a 107."""
        key = (request.merchant_id, request.mch_trade_id)
        unsaved = self._unsaved.get(key)
        if unsaved is not None and unsaved.expires_at <= self._clock():
            # Its pay_url may be dead by now: the platform decides (pay → 107 → query), as for
            # a repeat past its expiry.
            del self._unsaved[key]
            unsaved = None
        if unsaved is not None:
            conflict = check_repeat(unsaved, request)
            if conflict is not None:
                raise _Failed(
                    self._conflict(request, conflict, requested_at=requested_at, source="state")
                )
            return unsaved, "new"
        unified = to_unified_order(request)
        try:
            response: OrderResponseData = await self._call(
                "pay", lambda: self._client.create_order(unified)
            )
        except DuplicateOrder:
            try:
                order = await self._recover(
                    request, requested_at=requested_at, why="order recovered after duplicate"
                )
            except PooulError as exc:
                raise self._steer(
                    exc, request, ctx, requested_at=requested_at, order_exists=True
                ) from None
            return order, "recovered"
        except PooulError as exc:
            raise self._steer(exc, request, ctx, requested_at=requested_at) from None
        mismatch = response_mismatch(request, response)
        if mismatch is not None:
            malformed = MalformedResponse(f"pay: {mismatch}")
            raise self._steer(malformed, request, ctx, requested_at=requested_at) from None
        return new_order(request, response, now=self._clock(), default_ttl=self._default_ttl), "new"

    async def _recover(
        self, request: OrderRequest, *, requested_at: float | None, why: str
    ) -> StoredOrder:
        """The platform's order under the request's `mch_trade_id`, when it is this request's
        (`recover_order`); a conflict raises `_Failed`. Query errors propagate."""
        existing = await self._query_existing(request)
        recovered = recover_order(
            request, existing, now=self._clock(), default_ttl=self._default_ttl
        )
        if isinstance(recovered, Conflict):
            raise _Failed(
                self._conflict(request, recovered, requested_at=requested_at, source="platform")
            )
        log.info(
            why,
            extra={
                "merchant_id": request.merchant_id,
                "mch_trade_id": request.mch_trade_id,
                "trade_id": recovered.trade_id,
            },
        )
        return recovered

    async def _created_before_expiry(
        self, request: OrderRequest, ctx: KeyContext, *, requested_at: float | None
    ) -> StoredOrder | None:
        """For a request past its `time_expire` that the state does not know: the order an
        earlier attempt created while it was valid, or None when the platform has none (then
        it is `rejected`, and nothing is created). An earlier attempt may have reached the
        platform — a retry after a timeout, a crash before the state write, the same request
        again after the state forgot it — so `rejected` ("nothing was sent") needs the query."""
        try:
            return await self._recover(
                request,
                requested_at=requested_at,
                why="expired request answered with the order an earlier attempt created",
            )
        except OrderNotFound:
            return None
        except PooulError as exc:
            raise self._steer(exc, request, ctx, requested_at=requested_at) from None

    async def _query_existing(self, request: OrderRequest) -> QueryData:
        """The platform's order under the request's merchant and `mch_trade_id`."""
        return await self._call(
            "query",
            lambda: self._client.query_order(
                request.merchant_id, mch_trade_id=request.mch_trade_id
            ),
        )

    def _steer(
        self,
        exc: PooulError,
        request: OrderRequest,
        ctx: KeyContext,
        *,
        requested_at: float | None,
        order_exists: bool = False,
    ) -> Exception:
        """What a failed platform call turns into: retry, circuit breaker, or a `failed` answer.

        `order_exists`: the platform said 107, so a refusal of the query that follows is not the
        last word on the order — the `failed` answer is retryable (with the same mch_trade_id)."""
        extra = {
            "merchant_id": request.merchant_id,
            "mch_trade_id": request.mch_trade_id,
            "attempt": ctx.attempt,
            "error": str(exc),
        }
        if isinstance(exc, TransportError):
            reason = "timeout" if isinstance(exc, PooulTimeout) else "transport"
            self._metrics.retries.labels(reason=reason).inc()
            log.warning("pooul unavailable, will retry", extra=extra)
            return RemoteUnavailable(f"pooul_{reason}: {exc}")
        if isinstance(
            exc,
            RetryablePlatformError
            | ResponseSignatureError
            | MalformedResponse
            | OrderNotFound
            | RequestRefused,
        ):
            # OrderNotFound here: the platform said 107, yet the query does not see the order.
            reason = {
                RetryablePlatformError: "retryable_code",
                ResponseSignatureError: "bad_signature",
                MalformedResponse: "malformed_answer",
                OrderNotFound: "not_found_after_duplicate",
                RequestRefused: "http_refused",
            }[type(exc)]
            code = exc.code if isinstance(exc, PlatformError) else None
            msg = (exc.msg if isinstance(exc, PlatformError) else None) or str(exc)
            if not is_last_attempt(ctx.counted_failures, self._max_attempts):
                self._metrics.retries.labels(reason=reason).inc()
                log.warning("order attempt failed, will retry", extra={**extra, "reason": reason})
                # A refusal also tells the breaker: refused everything, the platform is as good
                # as down for us (an allowlist, a WAF).
                retry = RemoteRefused if isinstance(exc, RequestRefused) else Retry
                return retry(f"{reason}: {exc}")
            log.warning("order retries exhausted", extra={**extra, "reason": reason})
            return _Failed(
                failed_result(
                    request,
                    reason="retries_exhausted",
                    code=code,
                    msg=f"gave up after {ctx.counted_failures + 1} counted attempts: {msg}",
                    retryable=True,
                    requested_at=requested_at,
                    now=self._clock(),
                )
            )
        if isinstance(exc, PlatformError):
            log.info("platform refused the order", extra={**extra, "code": exc.code})
            msg = exc.msg or str(exc)
            if order_exists:
                msg = f"the order exists (code 107) but its query was refused: {msg}"
            return _Failed(
                failed_result(
                    request,
                    reason="platform_refused",
                    code=exc.code,
                    msg=msg,
                    retryable=order_exists,
                    requested_at=requested_at,
                    now=self._clock(),
                )
            )
        # MerchantKeyMissing: validation checks the merchant against the same keys, so this is
        # a configuration change under our feet; the runtime retries and then dead-letters.
        return exc

    async def _call(self, call: str, make: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await make()
        except PooulError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._metrics.platform_latency.labels(call=call, outcome=outcome).observe(
                time.perf_counter() - started
            )

    def _conflict(
        self,
        request: OrderRequest,
        conflict: Conflict,
        *,
        requested_at: float | None,
        source: Literal["state", "platform"],
    ) -> OrderFailed:
        """A `conflict` answer, counted by what showed it (the state, or the platform's order)."""
        self._metrics.conflicts.labels(source=source).inc()
        return failed_result(
            request,
            reason="conflict",
            code=int(ResultCode.DUPLICATE_ORDER),
            msg=conflict.msg,
            retryable=False,
            trade_id=conflict.trade_id,
            requested_at=requested_at,
            now=self._clock(),
        )

    async def _answer(
        self, ctx: KeyContext, key: bytes | None, result: _Result, *, path: str
    ) -> None:
        value, headers = encode_result(result)
        await ctx.send(self._results_topic, value, key=key, headers=headers)
        self._metrics.results.labels(outcome=result.status, path=path).inc()


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()
