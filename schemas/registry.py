"""The message contracts as a table: every model that crosses a topic, and who writes and reads it.

`pooul-worker schemas export` turns this table into `schemas/jsonschema/*.json` and
`schemas/asyncapi.yaml`. Topic names are referenced by their `Settings` field (the default is
the documented name; operators may rename), so this package stays free of `worker` imports.

To publish a new message: add its model to `MESSAGES`, list it on its topic in `TOPICS`, then
run `pooul-worker schemas export` and commit the regenerated files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from schemas.dead_letter import (
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SERVICE_HEADER,
    DeadLetter,
)
from schemas.events import PaymentEvent
from schemas.orders import STATUS_HEADER, OrderCreated, OrderFailed, OrderRejected, OrderRequest
from schemas.signals import (
    KIND_HEADER,
    MERCHANT_HEADER,
    REQUEST_ID_HEADER,
    NotifySignal,
    OrderCreatedSignal,
    RecheckSignal,
    ResolveSignal,
)

__all__ = ["COMPONENTS", "MESSAGES", "TOPICS", "Header", "Message", "Topic"]

Component = Literal["ingress", "orders", "trades", "dlq", "operator"]

COMPONENTS: dict[str, str] = {
    "ingress": "HTTP endpoint for Pooul notifies (`pooul-worker ingress`)",
    "orders": "orders worker (`pooul-worker orders`)",
    "trades": "trades worker (`pooul-worker trades`)",
    "dlq": "operator tool replaying dead letters (`pooul-worker dlq replay`)",
    "operator": "operator tool acting on one trade (`pooul-worker trade recheck|resolve`)",
}


@dataclass(frozen=True, slots=True)
class Header:
    """A Kafka record header; values are UTF-8 strings."""

    name: str
    description: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """One message model; `direction` picks the JSON Schema mode.

    `inbound` messages are written by other teams and validated by us (validation schema);
    `outbound` ones are written by us (serialization schema: what is on the wire).
    """

    model: type[BaseModel]
    summary: str
    direction: Literal["inbound", "outbound"]
    headers: tuple[Header, ...] = ()

    @property
    def name(self) -> str:
        return self.model.__name__


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic of the project: its address (a `Settings` field), key, messages and parties."""

    setting: str
    description: str
    key: str
    messages: tuple[str, ...]
    # component → the messages it writes (or reads); empty = every message of the topic
    producers: Mapping[Component, tuple[str, ...]]
    consumers: Mapping[Component, tuple[str, ...]]
    external_producers: str = ""
    external_consumers: str = ""
    compacted: bool = False
    internal: bool = False


_SIGNAL_HEADERS = (
    Header(KIND_HEADER, "`notify` or `order_created`, the value's `kind`"),
    Header(MERCHANT_HEADER, "the Pooul merchant id"),
    Header(REQUEST_ID_HEADER, "the upstream request id, when known", required=False),
)

_OPERATOR_HEADERS = (Header(KIND_HEADER, "`recheck` or `resolve`, the value's `kind`"),)

_RESULT_HEADERS = (
    Header(STATUS_HEADER, "`created`, `rejected` or `failed`, the value's `status`"),
    Header(MERCHANT_HEADER, "the Pooul merchant id, when the request had a valid one", False),
    Header(REQUEST_ID_HEADER, "the request's `request_id`, when it had one", required=False),
)

MESSAGES: tuple[Message, ...] = (
    Message(
        OrderRequest,
        "An order an upstream service wants created on Pooul (`alipay.jsapi`).",
        "inbound",
        (Header(REQUEST_ID_HEADER, "used when the body has no `request_id`", required=False),),
    ),
    Message(
        OrderCreated,
        "The order exists on the platform: open Alipay with `token_id` / `pay_url`.",
        "outbound",
        _RESULT_HEADERS,
    ),
    Message(
        OrderRejected,
        "The request broke the contract (field errors listed); nothing was sent to Pooul.",
        "outbound",
        _RESULT_HEADERS,
    ),
    Message(
        OrderFailed,
        "The platform refused the order, or it conflicts with an existing one.",
        "outbound",
        _RESULT_HEADERS,
    ),
    Message(
        NotifySignal,
        "A Pooul notify whose signature the ingress verified (raw body kept for audit).",
        "outbound",
        _SIGNAL_HEADERS,
    ),
    Message(
        OrderCreatedSignal,
        "The platform accepted an order: amount and expiry for the trades worker to reconcile.",
        "outbound",
        _SIGNAL_HEADERS,
    ),
    Message(
        RecheckSignal,
        "An operator asks the trades worker to query a trade again (a flagged trade, one "
        "given up on) and apply the usual rules.",
        "inbound",
        _OPERATOR_HEADERS,
    ),
    Message(
        ResolveSignal,
        "An operator settled a flagged trade outside the service: it becomes `resolved`, "
        "nothing is published.",
        "inbound",
        _OPERATOR_HEADERS,
    ),
    Message(
        PaymentEvent,
        "A confirmed payment fact (CloudEvents 1.0, structured mode); deduplicate on `id`.",
        "outbound",
        (
            Header("content-type", "`application/cloudevents+json; charset=UTF-8`"),
            Header(MERCHANT_HEADER, "the Pooul merchant id"),
            Header("pooul-trade-id", "Pooul's order id (`data.trade_id`)"),
            Header(
                "pooul-event-type", "the CloudEvents `type`, e.g. `com.pooul.payment.succeeded`"
            ),
        ),
    ),
    Message(
        DeadLetter,
        "A record (or timer firing) a worker gave up on, with the reason and the original "
        "key, value and headers for inspection and replay. The Kafka record carries the "
        "original key and the original headers too, followed by the two below.",
        "outbound",
        (
            Header(DEAD_LETTER_REASON_HEADER, "the `reason`, e.g. `invalid_signal`, `error`"),
            Header(DEAD_LETTER_SERVICE_HEADER, "the worker that gave up (`orders`, `trades`)"),
        ),
    ),
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        setting="pooul_topic_order_requests",
        description="Orders to create on Pooul. One result per request on order-results; "
        "sending the same `mch_trade_id` again is safe (never a second platform order).",
        key="`mch_trade_id`, UTF-8",
        messages=("OrderRequest",),
        producers={"dlq": ()},
        consumers={"orders": ()},
        external_producers="upstream services (checkout, order management)",
    ),
    Topic(
        setting="pooul_topic_order_results",
        description="The answer to each order request, discriminated by `status`.",
        key="`mch_trade_id`, UTF-8",
        messages=("OrderCreated", "OrderRejected", "OrderFailed"),
        producers={"orders": ()},
        consumers={},
        external_consumers="the upstream service that sent the request",
    ),
    Topic(
        setting="pooul_topic_trade_signals",
        description="Everything that may change a trade, keyed by `trade_id` so one trade's "
        "signals stay ordered on one partition.",
        key="`trade_id` (the platform's order id), UTF-8",
        messages=("NotifySignal", "OrderCreatedSignal", "RecheckSignal", "ResolveSignal"),
        producers={
            "ingress": ("NotifySignal",),
            "orders": ("OrderCreatedSignal",),
            "operator": ("RecheckSignal", "ResolveSignal"),
            "dlq": (),
        },
        consumers={"trades": ()},
    ),
    Topic(
        setting="pooul_topic_trade_state",
        description="Changelog of the trades worker's per-trade state, co-partitioned with "
        "trade-signals and restored on partition assignment. Internal: the format may change.",
        key="`trade_id`, UTF-8 (a null value is a tombstone)",
        messages=(),
        producers={"trades": ()},
        consumers={"trades": ()},
        compacted=True,
        internal=True,
    ),
    Topic(
        setting="pooul_topic_order_state",
        description="Changelog of the orders worker's per-order state, co-partitioned with "
        "order-requests. Internal: the format may change.",
        key="the order request's key, UTF-8 (a null value is a tombstone)",
        messages=(),
        producers={"orders": ()},
        consumers={"orders": ()},
        compacted=True,
        internal=True,
    ),
    Topic(
        setting="pooul_topic_payment_events",
        description="Confirmed payment facts as CloudEvents 1.0 (structured JSON). Each was "
        "confirmed by a signature-verified query; the same fact always has the same `id`, so "
        "consumers deduplicate on `id`. Delivery is at least once.",
        key="`mch_trade_id`, UTF-8 (all events of one order on one partition, in order)",
        messages=("PaymentEvent",),
        producers={"trades": ()},
        consumers={},
        external_consumers="downstream services (fulfilment, accounting, notifications)",
    ),
    Topic(
        setting="pooul_topic_dead_letters",
        description="Records the workers could not process, with the reason; never retried by "
        "the workers themselves. Inspect with `pooul-worker dlq list`, replay with "
        "`pooul-worker dlq replay` (to the source topic, with a `pooul-replayed-from` header).",
        key="the failed record's key (`trade_id` or `mch_trade_id`), UTF-8",
        messages=("DeadLetter",),
        producers={"orders": (), "trades": ()},
        consumers={"dlq": ()},
        external_consumers="operators and alerting",
    ),
)
