"""The `pooul-worker dev` demo: order requests in, a simulated buyer, payment events out.

It publishes N order requests, waits for their results, then plays the buyer through the
sandbox's control API: most orders are paid (a few then refunded by the merchant), some fail,
some are left to expire (the trades worker closes them). One demo merchant's notifies are lost (its payments are confirmed by
reconciliation) and another's are duplicated (the trades worker skips the copies). Payment events
are counted by distinct `id`: the demo passes when every paid order has exactly one
`succeeded` event and no other order has one.

    report = await run_demo(settings=stack.settings, ..., orders=50, progress=progress)
    print(render_summary(report)); exit(0 if report.ok else 1)
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from schemas.events import EVENT_TYPES, PaymentEvent
from schemas.orders import OrderCreated, OrderRequest, parse_order_result
from schemas.trade_state import TradeState
from worker.kafka import make_consumer, make_producer
from worker.settings import Settings

__all__ = ["DemoReport", "PlannedOrder", "plan_orders", "run_demo"]

Action = Literal["pay", "refund", "fail", "expire"]
SUCCEEDED = EVENT_TYPES[TradeState.PAID]
_EXPECTED_TYPE: dict[Action, str] = {
    "pay": SUCCEEDED,
    "refund": EVENT_TYPES[TradeState.REFUND_REQUESTED],  # after its succeeded event
    "fail": EVENT_TYPES[TradeState.FAILED],
    "expire": EVENT_TYPES[TradeState.CLOSED],
}
# Actions whose order is paid (a refunded order was paid first).
_PAID: frozenset[Action] = frozenset({"pay", "refund"})
_REFUND_WAIT = 30.0  # seconds a refund waits for its payment's event


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One demo order and what the simulated buyer will do with it."""

    merchant_id: str
    mch_trade_id: str
    total_fee: int
    action: Action


@dataclass(slots=True)
class DemoReport:
    """What the demo saw; `ok` is the acceptance check."""

    planned: list[PlannedOrder]
    merchants: dict[str, str]  # merchant id → its role in the demo (plain, lost, duplicated)
    created: dict[str, str] = field(default_factory=dict)  # mch_trade_id → trade_id
    other_results: Counter[str] = field(default_factory=Counter)  # rejected / failed
    acted: dict[str, Action] = field(default_factory=dict)  # mch_trade_id → action done
    action_errors: dict[str, str] = field(default_factory=dict)  # mch_trade_id → why
    event_records: Counter[str] = field(default_factory=Counter)  # type → records seen
    event_ids: dict[str, set[str]] = field(default_factory=dict)  # type → distinct ids
    succeeded_ids: dict[str, set[str]] = field(default_factory=dict)  # mch_trade_id → ids
    final_seen: set[str] = field(default_factory=set)  # mch_trade_ids with their expected event
    reconciled: set[str] = field(default_factory=set)  # event ids confirmed by reconciliation
    duplicates_skipped: int | None = None
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    timed_out: bool = False

    @property
    def paid(self) -> list[str]:
        return [m for m, action in self.acted.items() if action in _PAID]

    @property
    def refunded(self) -> list[str]:
        return [m for m, action in self.acted.items() if action == "refund"]

    @property
    def paid_exactly_once(self) -> int:
        return sum(1 for m in self.paid if len(self.succeeded_ids.get(m, ())) == 1)

    @property
    def unexpected_succeeded(self) -> list[str]:
        """Orders with a succeeded event that the buyer never paid."""
        return sorted(m for m in self.succeeded_ids if self.acted.get(m) not in _PAID)

    @property
    def done(self) -> bool:
        answered = len(self.created) + sum(self.other_results.values())
        actions = {p.mch_trade_id: p.action for p in self.planned}
        buyer_busy = any(
            actions[m] != "expire" and m not in self.acted and m not in self.action_errors
            for m in self.created
        )
        waiting = set(self.created) - set(self.action_errors)
        return answered >= len(self.planned) and not buyer_busy and waiting <= self.final_seen

    @property
    def ok(self) -> bool:
        return (
            bool(self.paid)
            and self.paid_exactly_once == len(self.paid)
            and not self.unexpected_succeeded
        )


def plan_orders(
    count: int, *, merchants: Sequence[str], run_id: str, seed: int | None
) -> list[PlannedOrder]:
    """About 75 % paid (a twentieth of all orders then refunded), 10 % failed, 15 % left to
    expire; a tenth each for the lossy and the duplicating merchant, the rest for the plain one.
    Refunds are not planned for the lossy merchant: a trade confirmed paid is not reconciled
    again, so a refund whose notifies are all lost is never seen. Reproducible with `seed`."""
    rng = random.Random(seed)
    fails = count // 10
    expires = round(count * 0.15)
    counts: dict[Action, int] = {"fail": fails, "expire": expires, "pay": count - fails - expires}
    actions = [action for action, times in counts.items() for _ in range(times)]
    rng.shuffle(actions)
    plain, lossy, dupes = merchants
    owners = [lossy] * (count // 10) + [dupes] * (count // 10)
    owners += [plain] * max(0, count - len(owners))
    rng.shuffle(owners)
    refundable = [i for i in range(count) if actions[i] == "pay" and owners[i] != lossy]
    for i in rng.sample(refundable, min(count // 20, len(refundable))):
        actions[i] = "refund"
    return [
        PlannedOrder(
            merchant_id=owners[i],
            mch_trade_id=f"dev-{run_id}-{i:05d}",
            total_fee=rng.randrange(100, 50_000),
            action=actions[i],
        )
        for i in range(count)
    ]


async def run_demo(
    *,
    settings: Settings,
    sandbox_url: str,
    trades_metrics_url: str | None,
    merchants: Sequence[str],
    orders: int,
    seed: int | None,
    wait_seconds: float,
    expire_after: float,
    progress: Callable[[DemoReport], None],
) -> DemoReport:
    """Run the scenario against a started stack and return what it saw (see the module doc)."""
    plain, lossy, dupes = merchants
    report = DemoReport(
        planned=plan_orders(orders, merchants=merchants, run_id=secrets.token_hex(3), seed=seed),
        merchants={plain: "plain", lossy: "notifies lost", dupes: "notifies duplicated x3"},
    )
    planned = {p.mch_trade_id: p for p in report.planned}
    consumer = make_consumer(
        settings, settings.pooul_topic_order_results, settings.pooul_topic_payment_events
    )
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _set_faults(http, sandbox_url, lossy=lossy, dupes=dupes)
            await _send_requests(producer, settings, report.planned, expire_after=expire_after)
            actions: set[asyncio.Task[None]] = set()
            deadline = time.monotonic() + wait_seconds
            while not report.done:
                if time.monotonic() > deadline:
                    report.timed_out = True
                    break
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if record.topic == settings.pooul_topic_order_results:
                            created = _on_result(report, planned, record.value)
                            if created is not None and created.action != "expire":
                                task = asyncio.create_task(_act(http, sandbox_url, report, created))
                                actions.add(task)
                                task.add_done_callback(actions.discard)
                        else:
                            _on_event(report, planned, record.value)
                report.elapsed = time.monotonic() - report.started
                progress(report)
            for task in list(actions):
                task.cancel()
            if trades_metrics_url:
                report.duplicates_skipped = await _scrape_duplicates(http, trades_metrics_url)
    finally:
        await producer.stop()
        await consumer.stop()
    report.elapsed = time.monotonic() - report.started
    progress(report)
    return report


async def _set_faults(
    http: aiohttp.ClientSession, sandbox_url: str, *, lossy: str, dupes: str
) -> None:
    for body in (
        {"merchant_id": lossy, "notify_loss_rate": 1.0},
        {"merchant_id": dupes, "notify_duplicates": 2},
    ):
        async with http.put(f"{sandbox_url}/sandbox/faults", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"sandbox refused faults {body}: {await response.text()}")


async def _send_requests(
    producer: AIOKafkaProducer,
    settings: Settings,
    planned: Sequence[PlannedOrder],
    *,
    expire_after: float,
) -> None:
    time_expire = int(time.time() + expire_after)
    futures = []
    for order in planned:
        request = OrderRequest(
            merchant_id=order.merchant_id,
            mch_trade_id=order.mch_trade_id,
            body=f"pooul-worker demo {order.mch_trade_id}",
            total_fee=order.total_fee,
            spbill_create_ip="127.0.0.1",
            buyer_logon_id="buyer@example.com",
            time_expire=time_expire,
            request_id=f"req-{order.mch_trade_id}",
        )
        futures.append(
            await producer.send(
                settings.pooul_topic_order_requests,
                request.model_dump_json(exclude_none=True).encode(),
                key=order.mch_trade_id.encode(),
            )
        )
    await asyncio.gather(*futures)


def _on_result(
    report: DemoReport, planned: dict[str, PlannedOrder], value: bytes | None
) -> PlannedOrder | None:
    """Record an order result; return the planned order when it was newly created."""
    if value is None:
        return None
    try:
        result = parse_order_result(value)
    except ValidationError:
        return None
    order = planned.get(result.mch_trade_id or "")
    if order is None:
        return None
    if isinstance(result, OrderCreated):
        if order.mch_trade_id in report.created:
            return None
        report.created[order.mch_trade_id] = result.trade_id
        return order
    report.other_results[result.status] += 1
    return None


def _on_event(report: DemoReport, planned: dict[str, PlannedOrder], value: bytes | None) -> None:
    if value is None:
        return
    try:
        event = PaymentEvent.model_validate_json(value)
    except ValidationError:
        return
    order = planned.get(event.subject)
    if order is None:
        return
    report.event_records[event.type] += 1
    report.event_ids.setdefault(event.type, set()).add(event.id)
    if event.type == SUCCEEDED:
        report.succeeded_ids.setdefault(order.mch_trade_id, set()).add(event.id)
    if event.type == _EXPECTED_TYPE[order.action]:
        report.final_seen.add(order.mch_trade_id)
    if event.data.confirmed_by == "reconcile":
        report.reconciled.add(event.id)


async def _act(
    http: aiohttp.ClientSession, sandbox_url: str, report: DemoReport, order: PlannedOrder
) -> None:
    """Play the buyer (and, for a refund, the merchant once the payment's event is out)."""
    mch_trade_id = order.mch_trade_id
    moves = ["pay", "refund"] if order.action == "refund" else [order.action]
    for move in moves:
        if move == "refund" and not await _payment_published(report, mch_trade_id):
            report.action_errors[mch_trade_id] = "refund: the payment's event never came"
            return
        url = f"{sandbox_url}/sandbox/orders/{report.created[mch_trade_id]}/{move}"
        try:
            async with http.post(url, json={}) as response:
                if response.status != 200:
                    detail = orjson.loads(await response.read()).get("error", response.status)
                    report.action_errors[mch_trade_id] = f"{move}: {detail}"
                    return
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            report.action_errors[mch_trade_id] = f"{move}: {exc!r}"
            return
        # Paid is paid, whatever happens to the refund after it.
        report.acted[mch_trade_id] = "pay" if move == "pay" else order.action


async def _payment_published(report: DemoReport, mch_trade_id: str) -> bool:
    deadline = time.monotonic() + _REFUND_WAIT
    while mch_trade_id not in report.succeeded_ids:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _scrape_duplicates(http: aiohttp.ClientSession, url: str) -> int | None:
    """`pooul_trades_duplicates_skipped_total` summed over kinds, from the trades worker."""
    try:
        async with http.get(url) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "pooul_trades_duplicates_skipped":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)
