"""What a handler gets besides the record: its key's state, timer and an output producer.

    class Handler(Protocol):
        async def handle(self, record: Record, ctx: KeyContext) -> None: ...
        async def on_timer(self, ctx: KeyContext) -> None: ...

Calls for one key are strictly serialised, so a handler may read `ctx.state`, decide and
`await ctx.set_state(...)` without locks. Order of effects inside a handler: send the output,
write the state, return; the offset is committed only after `handle` returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from worker.runtime.errors import RemoteUnavailable, UsageError
from worker.runtime.record import Record
from worker.runtime.state import PartitionState, StateEntry, encode_entry

__all__ = ["Handler", "KeyContext", "Outputs"]


class Handler(Protocol):
    async def handle(self, record: Record, ctx: KeyContext) -> None:
        """Process one record of `ctx.key`; raise Retry/RemoteUnavailable/Permanent to steer."""

    async def on_timer(self, ctx: KeyContext) -> None:
        """`ctx.key`'s `wake_at` has come (`ctx.record` is None). Unless this sets a new
        `wake_at`, the timer is cleared once it returns."""


class Outputs:
    """The processor's shared write side: one acks=all producer, the changelog topic, a clock."""

    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        state_topic: str | None,
        clock: Callable[[], float],
        on_timer_set: Callable[[float], None],
    ) -> None:
        self.producer = producer
        self.state_topic = state_topic
        self.clock = clock
        self.on_timer_set = on_timer_set

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> None:
        """Write and await the acks=all acknowledgement.

        Broker unavailable (timeouts, connection loss, leader changes: retriable errors) or
        this service not authorised to write there (an ACL mistake: every record would fail
        alike, so they wait for the fix behind the circuit breaker rather than all going to
        dead letters) → RemoteUnavailable. Another rejection (a record too large) propagates
        as is: it is retried like any error, then dead-lettered with its name in the detail.
        """
        try:
            await self.producer.send_and_wait(
                topic, value, key=key, headers=list(headers) or None, partition=partition
            )
        except (KafkaTimeoutError, TimeoutError) as exc:
            raise RemoteUnavailable(f"kafka_unavailable: {type(exc).__name__}: {exc}") from exc
        except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
            raise RemoteUnavailable(f"kafka_not_authorised: {type(exc).__name__}: {exc}") from exc
        except KafkaError as exc:
            if not exc.retriable:
                raise
            raise RemoteUnavailable(f"kafka_unavailable: {type(exc).__name__}: {exc}") from exc


class KeyContext:
    """One per (key, attempt). `attempt` is 1-based and counts every attempt, outage ones
    included; `counted_failures` is how many earlier attempts failed in a way that counts against
    `POOUL_MAX_ATTEMPTS` (not `RemoteUnavailable`): a handler that gives up by itself compares
    that, so an outage never uses up an item's attempts. `record` is None for a timer firing."""

    __slots__ = ("_outputs", "_store", "attempt", "counted_failures", "key", "partition", "record")

    def __init__(
        self,
        *,
        key: bytes,
        partition: int,
        attempt: int,
        record: Record | None,
        store: PartitionState | None,
        outputs: Outputs,
        counted_failures: int = 0,
    ) -> None:
        self.key = key
        self.partition = partition
        self.attempt = attempt
        self.counted_failures = counted_failures
        self.record = record
        self._store = store
        self._outputs = outputs

    def __repr__(self) -> str:
        return (
            f"KeyContext(key={self.key!r}, partition={self.partition}, attempt={self.attempt}, "
            f"counted_failures={self.counted_failures})"
        )

    def _entry(self) -> StateEntry | None:
        if self._store is None:
            return None
        return self._store.get(self.key, self._outputs.clock())

    @property
    def state(self) -> Any | None:
        """The key's current JSON-compatible value (None when absent or expired)."""
        entry = self._entry()
        return None if entry is None else entry.value

    @property
    def wake_at(self) -> float | None:
        entry = self._entry()
        return None if entry is None else entry.wake_at

    @property
    def expires_at(self) -> float | None:
        entry = self._entry()
        return None if entry is None else entry.expires_at

    def _require_store(self) -> tuple[PartitionState, str]:
        topic = self._outputs.state_topic
        if self._store is None or topic is None:
            raise UsageError("this processor has no state topic (pass state_topic=...)")
        return self._store, topic

    async def set_state(
        self, value: Any, *, wake_at: float | None = None, expires_at: float | None = None
    ) -> None:
        """Replace the key's entry (value, timer, expiry) once the changelog acknowledged it.

        `wake_at` (Unix seconds) → `on_timer` at that time, surviving restarts and rebalances;
        None means no timer. `expires_at` → the entry is dropped (tombstone) after that time.
        """
        store, topic = self._require_store()
        entry = StateEntry(value, wake_at, expires_at)
        payload = encode_entry(entry)
        await self._outputs.send(topic, payload, key=self.key, partition=self.partition)
        store.put(self.key, entry, payload)
        if wake_at is not None:
            self._outputs.on_timer_set(wake_at)

    async def delete_state(self) -> None:
        """Drop the key's entry (and its timer) with a changelog tombstone."""
        store, topic = self._require_store()
        await self._outputs.send(topic, None, key=self.key, partition=self.partition)
        store.delete(self.key)

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Produce one record and wait for acks=all; broker trouble raises RemoteUnavailable."""
        await self._outputs.send(topic, value, key=key, headers=headers)
