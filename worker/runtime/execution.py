"""Running one queued item of a key: an input record, a timer firing or an expiry.

Each handler attempt runs behind the circuit breaker and inside `run.handling()` (what a
revocation waits for); between attempts the key sleeps its backoff, keeping its place: later
records of the key wait, other keys flow. Every method returns True when the item is done
(handled or dead-lettered, which makes its offset committable) and False when its partition
was revoked first (the item stays unfinished; the next owner redoes it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from schemas.dead_letter import DeadLetter
from worker.runtime.aio import cancelling
from worker.runtime.attempts import Verdict, judge
from worker.runtime.backoff import backoff_delay
from worker.runtime.breaker import CircuitBreaker
from worker.runtime.context import Handler, KeyContext, Outputs
from worker.runtime.deadletter import (
    DeadLetterPublisher,
    record_dead_letter,
    timer_dead_letter,
    without_payload,
)
from worker.runtime.errors import RemoteUnavailable
from worker.runtime.metrics import RuntimeMetrics
from worker.runtime.partition import PartitionRun
from worker.runtime.record import Record
from worker.runtime.state import StateEntry, encode_entry
from worker.settings import Settings

__all__ = ["Executor"]

log = logging.getLogger(__name__)


class Executor:
    """Runs items with retries, backoff, the circuit breaker and dead letters."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        handler: Handler,
        breaker: CircuitBreaker,
        outputs: Outputs,
        dead_letters: DeadLetterPublisher,
        metrics: RuntimeMetrics,
        state_topic: str | None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._handler = handler
        self._breaker = breaker
        self._outputs = outputs
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._state_topic = state_topic
        self._rng = random.Random()

    # ------------------------------------------------------------------ items

    async def record(self, run: PartitionRun, key: bytes, record: Record) -> bool:
        async def dead_letter(verdict: Verdict, attempts: int) -> None:
            await self._publish(
                record_dead_letter(
                    record,
                    service=self.name,
                    outcome=verdict.outcome,
                    reason=verdict.reason,
                    detail=verdict.detail,
                    attempts=attempts,
                    now=time.time(),
                )
            )
            self._metrics.dead_lettered.inc()

        verdict = await self._attempts(
            run,
            key,
            record,
            invoke=lambda ctx: self._handler.handle(record, ctx),
            dead_letter=dead_letter,
            where={"offset": record.offset},
        )
        if verdict is None:
            return False
        if verdict.kind == "ok":
            self._metrics.ok.inc()
        return True

    async def timer(self, run: PartitionRun, key: bytes, due: float) -> bool:
        """Call `on_timer` for a due key, then clear the timer unless the handler set a new one."""
        state = run.state
        assert state is not None and self._state_topic is not None
        entry = state.get(key, time.time())
        if entry is None or entry.wake_at != due:
            self._metrics.timers.labels(self.name, "stale").inc()
            return True  # changed since it was indexed; a newer timer has its own index item
        state_topic = self._state_topic

        async def dead_letter(verdict: Verdict, attempts: int) -> None:
            current = state.get(key, time.time())
            await self._publish(
                timer_dead_letter(
                    service=self.name,
                    state_topic=state_topic,
                    partition=run.partition,
                    key=key,
                    state=None if current is None else current.value,
                    wake_at=due,
                    outcome=verdict.outcome,
                    reason=verdict.reason,
                    detail=verdict.detail,
                    attempts=attempts,
                    now=time.time(),
                )
            )

        async def clear_timer(verdict: Verdict) -> None:
            current = state.get(key, time.time())
            if current is not None and current.wake_at == due:
                await self.write_state(
                    run, key, StateEntry(current.value, None, current.expires_at)
                )

        verdict = await self._attempts(
            run,
            key,
            None,
            invoke=self._handler.on_timer,
            dead_letter=dead_letter,
            finally_=clear_timer,
            where={"timer": due},
        )
        if verdict is None:
            return False
        outcome = "ok" if verdict.kind == "ok" else "dead_lettered"
        self._metrics.timers.labels(self.name, outcome).inc()
        return True

    async def expire(self, run: PartitionRun, key: bytes, due: float) -> bool:
        """Drop an entry past its expiry with a tombstone (no handler call)."""
        assert run.state is not None
        entry = run.state.peek(key)
        if entry is None or entry.expires_at != due or due > time.time():
            return True
        with run.handling():
            await self.write_state(run, key, None)
        self._metrics.expired.labels(self.name).inc()
        return True

    # ------------------------------------------------------------------ attempts

    async def _attempts(
        self,
        run: PartitionRun,
        key: bytes,
        record: Record | None,
        *,
        invoke: Callable[[KeyContext], Awaitable[None]],
        dead_letter: Callable[[Verdict, int], Awaitable[None]],
        finally_: Callable[[Verdict], Awaitable[None]] | None = None,
        where: dict[str, Any],
    ) -> Verdict | None:
        """Attempt until ok or dead (that verdict), or None once the partition was revoked."""
        counted = 0
        remote = 0
        attempt = 0
        while run.active():
            attempt += 1
            ctx = KeyContext(
                key=key,
                partition=run.partition,
                attempt=attempt,
                record=record,
                store=run.state,
                outputs=self._outputs,
                counted_failures=counted,
            )
            async with self._breaker.attempt() as permit:
                with run.handling():
                    error = await self._call(invoke(ctx))
                    verdict = judge(
                        error,
                        counted_failures=counted,
                        max_attempts=self._settings.pooul_max_attempts,
                    )
                    if verdict.breaker == "success":
                        permit.succeeded()
                    elif verdict.breaker == "failure":
                        permit.failed()
                    else:
                        permit.neutral()
                    if verdict.kind == "dead":
                        await dead_letter(verdict, attempt)
                    if verdict.kind != "retry":
                        if finally_ is not None:
                            await finally_(verdict)
                        return verdict
            self._metrics.retries.labels(self.name, verdict.retry_kind).inc()
            if verdict.counted:
                counted += 1
                number = counted
            else:
                remote += 1
                number = remote
            log.info(
                "will retry",
                extra={
                    "worker": self.name,
                    "partition": run.partition,
                    **where,
                    "attempt": attempt,
                    "reason": verdict.reason,
                },
            )
            if not run.active():
                break
            await asyncio.sleep(self._retry_delay(verdict, number))
        return None

    async def _call(self, call: Awaitable[None]) -> BaseException | None:
        started = time.perf_counter()
        try:
            await call
        except asyncio.CancelledError as exc:
            if cancelling():
                raise  # this task is being cancelled (revoke, stop): not the handler's failure
            # The handler awaited something another task cancelled: an ordinary failure.
            return RuntimeError(f"an awaitable of the handler was cancelled: {exc!r}")
        except Exception as exc:
            return exc
        finally:
            self._metrics.handler_time.observe(time.perf_counter() - started)
        return None

    def _retry_delay(self, verdict: Verdict, number: int) -> float:
        if verdict.delay is not None:
            return verdict.delay
        return backoff_delay(
            number,
            base=self._settings.pooul_retry_backoff_base,
            maximum=self._settings.pooul_retry_backoff_max,
            rng=self._rng,
        )

    # ------------------------------------------------------------------ writes the runtime owns

    async def _publish(self, letter: DeadLetter) -> None:
        """Write a dead letter, retrying until acknowledged (or cancelled by revoke/stop).

        A letter too large for the broker is written without the original's value and headers
        (a retry could never succeed, and the partition's commit would wait for it forever).
        """
        failures = 0
        while True:
            try:
                await self._dead_letters.publish(letter)
            except MessageSizeTooLargeError as exc:
                if letter.payload_omitted_bytes is not None:
                    raise  # even without the payload: a bug, not a condition to wait out
                log.error(
                    "dead letter too large; writing it without the original value and headers",
                    extra={"worker": self.name, "id": letter.id, "error": repr(exc)},
                )
                letter = without_payload(letter)
                continue
            except (KafkaError, TimeoutError) as exc:
                failures += 1
                log.error(
                    "dead letter not written yet; retrying",
                    extra={"worker": self.name, "id": letter.id, "error": repr(exc)},
                )
                await asyncio.sleep(backoff_delay(failures, base=0.2, maximum=10.0, rng=self._rng))
                continue
            self._metrics.dead_letters.labels(self.name, letter.kind, letter.outcome).inc()
            log.warning(
                "dead-lettered",
                extra={
                    "worker": self.name,
                    "id": letter.id,
                    "kind": letter.kind,
                    "outcome": letter.outcome,
                    "reason": letter.reason,
                    "detail": letter.detail[:300],
                    "attempts": letter.attempts,
                },
            )
            return

    async def write_state(self, run: PartitionRun, key: bytes, entry: StateEntry | None) -> None:
        """A runtime-initiated state change, retried until the changelog acknowledged it."""
        assert self._state_topic is not None and run.state is not None
        payload = None if entry is None else encode_entry(entry)
        failures = 0
        while True:
            try:
                await self._outputs.send(
                    self._state_topic, payload, key=key, partition=run.partition
                )
                break
            except RemoteUnavailable as exc:
                failures += 1
                log.warning(
                    "state write failed; retrying", extra={"worker": self.name, "error": exc.reason}
                )
                await asyncio.sleep(backoff_delay(failures, base=0.2, maximum=10.0, rng=self._rng))
        if entry is None or payload is None:
            run.state.delete(key)
        else:
            run.state.put(key, entry, payload)
