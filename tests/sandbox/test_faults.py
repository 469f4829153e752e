"""Fault injection: every switch, global and per merchant, switchable while running, seeded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY
from tests.sandbox.wire import (
    CLOSE,
    PAY,
    QUERY,
    call,
    control,
    data_verifies,
    new_mch_trade_id,
    pay_fields,
    post_json,
    signed,
)
from worker.sandbox import SandboxServer


def _mch() -> str:
    return new_mch_trade_id("F")


async def _faults(
    http: aiohttp.ClientSession, sandbox: SandboxServer, **config: Any
) -> dict[str, Any]:
    status, body = await control(http, sandbox.url, "PUT", "/sandbox/faults", config)
    assert status == 200, body
    snapshot: dict[str, Any] = body
    return snapshot


async def _pay(
    http: aiohttp.ClientSession,
    sandbox: SandboxServer,
    merchant_id: str = MERCHANT_ID,
    key: str = MERCHANT_KEY,
    mch_trade_id: str | None = None,
    **overrides: Any,
) -> tuple[int, Any]:
    """(HTTP status, envelope or text) of one pay call."""
    fields = signed(pay_fields(merchant_id, mch_trade_id or _mch(), **overrides), key)
    return await post_json(http, sandbox.url + PAY, fields)


async def test_latency_fixed_and_range_delay_gateway_calls(sandbox, http):
    """`latency_ms` (a number or [min, max]) delays every gateway call by at least its minimum."""
    for latency, minimum in ((120, 0.12), ([100, 150], 0.1)):
        await _faults(http, sandbox, latency_ms=latency)
        started = time.perf_counter()
        status, body = await _pay(http, sandbox)
        assert time.perf_counter() - started >= minimum
        assert status == 200 and body["code"] == 0


async def test_error_500_per_merchant_leaves_other_merchants_alone(sandbox, http):
    """A merchant-scoped 500 rate hits only that merchant, and no order is created."""
    await _faults(http, sandbox, merchant_id=MERCHANT_ID, error_500_rate=1.0)
    status, _ = await _pay(http, sandbox)
    assert status == 500
    status, body = await _pay(http, sandbox, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY)
    assert status == 200 and body["code"] == 0
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?merchant_id={MERCHANT_ID}"
    )
    assert listed["count"] == 0
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert stats["calls"]["pay"] == {"http_500": 1, "0": 1}


async def test_error_status_and_query_without_pay_link(sandbox, http):
    """`error_500_status` sets those answers' status (a 403 plays a proxy refusing the call);
    `query_pay_link` off answers queries without token_id/pay_url/appid, as the platform's
    documented query, while pay answers keep them."""
    await _faults(http, sandbox, error_500_rate=1.0, error_500_status=403)
    status, _ = await _pay(http, sandbox)
    assert status == 403
    await _faults(http, sandbox, query_pay_link=False)
    status, created = await _pay(http, sandbox)
    assert status == 200 and created["data"]["pay_url"]
    trade_id = created["data"]["trade_id"]
    fields = {"merchant_id": MERCHANT_ID, "trade_id": trade_id}
    queried = await call(http, sandbox.url, QUERY, fields, MERCHANT_KEY)
    assert queried["code"] == 0 and queried["data"]["trade_id"] == trade_id
    assert not {"token_id", "pay_url", "appid"} & set(queried["data"])
    assert data_verifies(queried, MERCHANT_KEY)
    await _faults(http, sandbox)
    queried = await call(http, sandbox.url, QUERY, fields, MERCHANT_KEY)
    assert queried["data"]["pay_url"] == created["data"]["pay_url"]
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert stats["calls"]["pay"] == {"http_403": 1, "0": 1}


async def test_loose_types_send_amounts_as_text_and_unlisted_fields(sandbox, http, notify_receiver):
    """`loose_types`: query answers and notifies carry `total_fee` as a string and a field the
    docs do not list, signed as sent — verifying over the raw `data` still works, over a
    re-serialised model it would not."""
    await _faults(http, sandbox, loose_types=True)
    status, created = await _pay(http, sandbox, notify_url=notify_receiver.url)
    assert status == 200 and created["code"] == 0
    trade_id = created["data"]["trade_id"]
    fields = {"merchant_id": MERCHANT_ID, "trade_id": trade_id}
    queried = await call(http, sandbox.url, QUERY, fields, MERCHANT_KEY)
    assert isinstance(queried["data"]["total_fee"], str)
    assert "sandbox_unlisted" in queried["data"]
    assert data_verifies(queried, MERCHANT_KEY)
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/pay")
    [received] = await notify_receiver.wait_for(1)
    notified = received.json
    assert isinstance(notified["data"]["total_fee"], str)
    assert "sandbox_unlisted" in notified["data"] and data_verifies(notified, MERCHANT_KEY)


async def test_global_faults_apply_to_merchants_without_their_own(sandbox, http):
    """A global 601 rate hits every merchant except one with its own config, which replaces it;
    a 601 on pay creates nothing, a 601 on query answers no data."""
    _, existing = await _pay(http, sandbox, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY)
    await _faults(http, sandbox, code_601_rate=1.0)
    await _faults(http, sandbox, merchant_id=MERCHANT_ID, latency_ms=0)
    _, body = await _pay(http, sandbox, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY)
    assert body["code"] == 601 and "data" not in body
    _, body = await _pay(http, sandbox)
    assert body["code"] == 0
    query = await call(
        http,
        sandbox.url,
        QUERY,
        {"merchant_id": OTHER_MERCHANT_ID, "trade_id": existing["data"]["trade_id"]},
        OTHER_MERCHANT_KEY,
    )
    assert query["code"] == 601 and "data" not in query
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?merchant_id={OTHER_MERCHANT_ID}"
    )
    assert listed["count"] == 1
    status, snapshot = await control(http, sandbox.url, "GET", "/sandbox/faults")
    assert status == 200
    assert snapshot["global"]["code_601_rate"] == 1.0
    assert snapshot["merchants"][MERCHANT_ID]["code_601_rate"] == 0.0


async def test_bad_signature_fault_answers_with_a_signature_that_does_not_verify(sandbox, http):
    """With `bad_signature_rate` 1 a successful answer's sign does not verify under the key."""
    await _faults(http, sandbox, bad_signature_rate=1.0)
    _, body = await _pay(http, sandbox)
    assert body["code"] == 0 and body["sign"]
    assert not data_verifies(body, MERCHANT_KEY)
    await control(http, sandbox.url, "DELETE", "/sandbox/faults")
    _, body = await _pay(http, sandbox)
    assert data_verifies(body, MERCHANT_KEY)


async def test_create_then_timeout_creates_the_order_and_a_retry_gets_107(sandbox, http):
    """The order is created but the answer withheld; the client times out and its retry with the
    same mch_trade_id gets 107 (one platform order)."""
    await _faults(http, sandbox, create_then_timeout_rate=1.0, hang_seconds=5.0)
    fields = signed(pay_fields(MERCHANT_ID, _mch()), MERCHANT_KEY)
    with pytest.raises(TimeoutError):
        async with http.post(
            sandbox.url + PAY, json=fields, timeout=aiohttp.ClientTimeout(total=0.3)
        ) as response:
            await response.read()
    _, body = await post_json(http, sandbox.url + PAY, fields)
    assert body["code"] == 107
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?mch_trade_id={fields['mch_trade_id']}"
    )
    assert listed["count"] == 1
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert stats["calls"]["pay"] == {"timeout_after_create": 1, "107": 1}


async def test_hang_ends_with_the_normal_answer(sandbox, http):
    """After `hang_seconds` a patient client still gets the signed answer of the created order."""
    await _faults(http, sandbox, create_then_timeout_rate=1.0, hang_seconds=0.1)
    status, body = await _pay(http, sandbox)
    assert status == 200 and body["code"] == 0 and data_verifies(body, MERCHANT_KEY)


async def test_notify_duplicates_send_extra_copies(sandbox, notify_receiver, http):
    """`notify_duplicates: 2` sends each delivery three times, all recorded."""
    await _faults(http, sandbox, notify_duplicates=2)
    _, created = await _pay(http, sandbox, notify_url=notify_receiver.url)
    trade_id = created["data"]["trade_id"]
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/pay")
    received = await notify_receiver.wait_for(3)
    assert len({r.body for r in received}) == 1
    async with asyncio.timeout(5):
        while True:
            _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{trade_id}")
            if order["notifications"][0]["status"] == "delivered":
                break
            await asyncio.sleep(0.01)
    assert sorted(a["copy"] for a in order["notify_attempts"]) == [0, 1, 2]
    assert {a["delivery"] for a in order["notify_attempts"]} == {1}


async def test_notify_loss_records_a_lost_notification_and_sends_nothing(
    sandbox, notify_receiver, http
):
    """With `notify_loss_rate` 1 a payment's notify is never sent and is recorded as lost."""
    await _faults(http, sandbox, merchant_id=MERCHANT_ID, notify_loss_rate=1.0)
    _, created = await _pay(http, sandbox, notify_url=notify_receiver.url)
    trade_id = created["data"]["trade_id"]
    _, order = await control(http, sandbox.url, "POST", f"/sandbox/orders/{trade_id}/pay")
    assert order["trade_state"] == 0
    assert [n["status"] for n in order["notifications"]] == ["lost"]
    _, other = await _pay(
        http, sandbox, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY, notify_url=notify_receiver.url
    )
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{other['data']['trade_id']}/pay")
    [notify] = await notify_receiver.wait_for(1)
    assert notify.data["merchant_id"] == OTHER_MERCHANT_ID
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert stats["notify"]["lost"] == 1


async def test_forge_notify_rate_sends_a_paid_claim_the_order_does_not_back(
    sandbox, notify_receiver, http
):
    """With `forge_notify_rate` 1 a new order gets a validly signed "paid" notify while the
    query still says not paid."""
    await _faults(http, sandbox, forge_notify_rate=1.0)
    _, created = await _pay(http, sandbox, notify_url=notify_receiver.url)
    trade_id = created["data"]["trade_id"]
    [notify] = await notify_receiver.wait_for(1)
    assert data_verifies(notify.json, MERCHANT_KEY)
    assert notify.data["trade_id"] == trade_id and notify.data["trade_state"] == 0
    query = await call(
        http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID, "trade_id": trade_id}, MERCHANT_KEY
    )
    assert query["data"]["trade_state"] == 2
    _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{trade_id}")
    assert [n["kind"] for n in order["notifications"]] == ["forged"]


async def test_force_code_refuses_the_chosen_endpoint_and_changes_nothing(sandbox, http):
    """`force_code` answers that code (no data, no sign) on its endpoints only, after the real
    authentication checks, and creates nothing; an undocumented code is answered as well."""
    _, existing = await _pay(http, sandbox)
    trade_id = existing["data"]["trade_id"]
    await _faults(http, sandbox, force_code=202, force_code_endpoints=["pay"])
    status, body = await _pay(http, sandbox)
    assert status == 200 and body["code"] == 202 and body["msg"]
    assert "data" not in body and "sign" not in body
    # A request that fails authentication gets its real code, not the forced one.
    _, body = await _pay(http, sandbox, key=OTHER_MERCHANT_KEY)
    assert body["code"] == 101
    query = await call(
        http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID, "trade_id": trade_id}, MERCHANT_KEY
    )
    assert query["code"] == 0 and query["data"]["trade_id"] == trade_id
    await _faults(http, sandbox, force_code=600, force_code_endpoints=["query", "order_close"])
    query = await call(
        http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID, "trade_id": trade_id}, MERCHANT_KEY
    )
    assert query["code"] == 600 and query["err_code"] == "SANDBOX_FAULT"
    close = await call(
        http, sandbox.url, CLOSE, {"merchant_id": MERCHANT_ID, "trade_id": trade_id}, MERCHANT_KEY
    )
    assert close["code"] == 600
    await _faults(http, sandbox, force_code=999)
    _, body = await _pay(http, sandbox)
    assert body["code"] == 999 and "999" in body["msg"]
    _, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?merchant_id={MERCHANT_ID}"
    )
    assert listed["count"] == 1
    assert listed["orders"][0]["trade_state"] == 2
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert stats["calls"] == {
        "pay": {"0": 1, "202": 1, "101": 1, "999": 1},
        "query": {"0": 1, "600": 1},
        "order_close": {"600": 1},
    }


async def test_force_code_rate_is_a_seeded_share_of_calls(make_sandbox, http):
    """With `force_code_rate` 0.5 some calls get the code and the others succeed, the same
    ones for the same seed; a merchant's own config without it is not refused."""
    patterns = []
    for _ in range(2):
        server = await make_sandbox(seed=11)
        await _faults(http, server, force_code=1500, force_code_rate=0.5)
        await _faults(http, server, merchant_id=OTHER_MERCHANT_ID, latency_ms=0)
        pattern = []
        for index in range(16):
            _, body = await _pay(http, server, mch_trade_id=f"forced-{index}")
            pattern.append(body["code"])
        _, other = await _pay(http, server, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY)
        assert other["code"] == 0
        patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {0, 1500}


async def test_fault_config_is_validated(sandbox, http):
    """Out-of-range rates, unknown fields, bad latency ranges and unknown merchants get 400."""
    for body in (
        {"error_500_rate": 1.5},
        {"no_such_fault": 1},
        {"latency_ms": [200, 100]},
        {"latency_ms": -1},
        {"notify_duplicates": -1},
        {"merchant_id": "not-a-merchant", "error_500_rate": 0.1},
        {"force_code": 0},
        {"force_code": "202"},
        {"force_code": 202, "force_code_rate": 2},
        {"force_code": 202, "force_code_endpoints": ["refund"]},
        {"force_code": 202, "force_code_endpoints": []},
    ):
        status, answer = await control(http, sandbox.url, "PUT", "/sandbox/faults", body)
        assert status == 400 and answer["error"], body


async def test_delete_resets_one_merchant_or_everything(sandbox, http):
    """DELETE with a merchant_id drops that merchant's config; without, every fault."""
    await _faults(http, sandbox, error_500_rate=0.5)
    await _faults(http, sandbox, merchant_id=MERCHANT_ID, error_500_rate=1.0)
    _, snapshot = await control(
        http, sandbox.url, "DELETE", f"/sandbox/faults?merchant_id={MERCHANT_ID}"
    )
    assert snapshot["merchants"] == {} and snapshot["global"]["error_500_rate"] == 0.5
    _, snapshot = await control(http, sandbox.url, "DELETE", "/sandbox/faults")
    assert snapshot["global"]["error_500_rate"] == 0.0


async def test_seeded_sandboxes_draw_the_same_faults_and_ids(make_sandbox, http):
    """Two sandboxes with the same seed answer the same call sequence identically."""
    patterns = []
    for _ in range(2):
        server = await make_sandbox(seed=7)
        await _faults(http, server, error_500_rate=0.5)
        pattern = []
        for index in range(16):
            status, body = await _pay(http, server, mch_trade_id=f"seeded-{index}")
            pattern.append(body["data"]["token_id"] if status == 200 else "500")
        patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert "500" in patterns[0] and any(p != "500" for p in patterns[0])
