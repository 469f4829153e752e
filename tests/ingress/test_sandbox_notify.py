"""The sandbox's notify sender (the platform's behaviour) pointed at the real ingress: delivered
notifies stop the retries, and an ingress that cannot write makes the sender retry until it can."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson

from schemas.signals import NotifySignal, parse_trade_signal
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, base_settings
from tests.ingress.conftest import FAST, restart_broker, stop_broker
from tests.ingress.helpers import NOTIFY_PATH, topic_records
from worker.ingress.app import PUBLISHER_KEY
from worker.ingress.notify import verify_notify
from worker.pooul.signing import sign
from worker.topics import create_topics


async def _paid_order(http: aiohttp.ClientSession, sandbox: Any, notify_url: str) -> str:
    """Create an alipay.jsapi order whose notify_url is the ingress, pay it; return its trade_id."""
    fields: dict[str, Any] = {
        "pay_type": "alipay.jsapi",
        "merchant_id": MERCHANT_ID,
        "mch_trade_id": "I" + uuid.uuid4().hex[:20],
        "body": "云南普洱 357g",
        "total_fee": 12,
        "spbill_create_ip": "203.0.113.7",
        "notify_url": notify_url,
        "buyer_logon_id": "13800001234",
        "nonce_str": uuid.uuid4().hex[:16],
    }
    fields["sign"] = sign(fields, MERCHANT_KEY)
    async with http.post(sandbox.url + "/paygate/merchant_info/pay", json=fields) as response:
        created = await response.json()
    assert created["code"] == 0, created
    trade_id: str = created["data"]["trade_id"]
    async with http.post(f"{sandbox.url}/sandbox/orders/{trade_id}/pay") as response:
        assert response.status == 200
    return trade_id


async def _order(http: aiohttp.ClientSession, sandbox: Any, trade_id: str) -> dict[str, Any]:
    async with http.get(f"{sandbox.url}/sandbox/orders/{trade_id}") as response:
        order: dict[str, Any] = await response.json()
        return order


async def _wait_order(http, sandbox, trade_id: str, done) -> dict[str, Any]:
    """Poll the sandbox's view of an order until `done(order)` (20 s at most)."""
    async with asyncio.timeout(20):
        while True:
            order = await _order(http, sandbox, trade_id)
            if done(order):
                return order
            await asyncio.sleep(0.02)


def _delivered(order: dict[str, Any]) -> bool:
    return bool(order["notifications"]) and order["notifications"][0]["status"] != "pending"


async def test_sandbox_notify_is_delivered_once_and_not_retried(
    sandbox, ingress, ingress_settings, http
):
    """A paid sandbox order's notify reaches the ingress, gets `success` on the first delivery so
    the sender stops, and the record on the topic re-verifies from its stored raw body."""
    trade_id = await _paid_order(http, sandbox, ingress.url + NOTIFY_PATH)
    order = await _wait_order(http, sandbox, trade_id, _delivered)
    [notification] = order["notifications"]
    assert notification["status"] == "delivered"
    [attempt] = order["notify_attempts"]
    assert (attempt["outcome"], attempt["http_status"], attempt["body"]) == (
        "success",
        200,
        "success",
    )
    [record] = await topic_records(ingress_settings)
    assert record.key == trade_id.encode()
    signal = parse_trade_signal(record.value)
    assert isinstance(signal, NotifySignal)
    again = verify_notify(signal.body.encode(), keys=ingress_settings.merchant_keys)
    assert (again.trade_id, again.trade_state) == (trade_id, "0")


async def test_the_sender_retries_through_a_broker_outage_until_success(
    private_broker, make_ingress, make_sandbox
):
    """While the broker is down every delivery gets 503 `fail` and the sender keeps retrying on
    its schedule; once the broker is back a later delivery gets `success`, the sender stops, and
    the notify is on the topic."""
    settings = base_settings(
        private_broker.bootstrap_servers, **{**FAST, "pooul_ingress_ack_timeout": 0.3}
    )
    await create_topics(settings)
    ingress = await make_ingress(settings)
    sandbox = await make_sandbox()
    await stop_broker(private_broker)
    async with aiohttp.ClientSession() as http:
        trade_id = await _paid_order(http, sandbox, ingress.url + NOTIFY_PATH)
        # Deliveries 1-5 come within ~2 s at time scale 0.001; the 6th waits 1.8 s more.
        refused = await _wait_order(
            http, sandbox, trade_id, lambda o: len(o["notify_attempts"]) >= 5
        )
        assert {(a["http_status"], a["body"]) for a in refused["notify_attempts"]} == {
            (503, "fail")
        }
        # Let the refused records expire before the broker returns empty (see test_outage._settle).
        await ingress.app[PUBLISHER_KEY].flush()
        await restart_broker(private_broker, settings)
        order = await _wait_order(http, sandbox, trade_id, _delivered)
    assert order["notifications"][0]["status"] == "delivered"
    attempts = order["notify_attempts"]
    assert attempts[-1]["outcome"] == "success"
    assert all(a["outcome"] == "rejected" for a in attempts[:-1]) and len(attempts) >= 6
    assert [r.key for r in await topic_records(settings)] == [trade_id.encode()]


async def test_a_notify_signed_with_an_untrusted_key_is_refused_on_every_delivery(
    sandbox, make_ingress, make_settings, http
):
    """A notify signed with a key the ingress does not trust is refused (403) on every delivery
    and never written."""
    settings = await make_settings(
        **FAST, pooul_merchant_keys=orjson.dumps({MERCHANT_ID: "not-the-sandbox-key"}).decode()
    )
    ingress = await make_ingress(settings)
    trade_id = await _paid_order(http, sandbox, ingress.url + NOTIFY_PATH)
    order = await _wait_order(http, sandbox, trade_id, lambda o: len(o["notify_attempts"]) >= 3)
    assert {(a["http_status"], a["body"]) for a in order["notify_attempts"]} == {(403, "fail")}
    assert order["notifications"][0]["status"] == "pending"
    assert await topic_records(settings) == []
