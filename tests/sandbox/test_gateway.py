"""The sandbox gateway speaks the protocol page: signing, documented codes, query and close."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY
from tests.fixtures.sandbox import sandbox_settings
from tests.sandbox.wire import (
    CLOSE,
    PAY,
    QUERY,
    call,
    control,
    create_order,
    data_verifies,
    md5_sign,
    new_mch_trade_id,
    pay_fields,
    post_json,
    signed,
)
from worker.sandbox import SandboxServer


def _mch() -> str:
    return new_mch_trade_id("T")


async def _create(
    http: aiohttp.ClientSession, sandbox: SandboxServer, **overrides: Any
) -> dict[str, Any]:
    return await create_order(http, sandbox.url, MERCHANT_ID, MERCHANT_KEY, prefix="T", **overrides)


async def _query(http: aiohttp.ClientSession, sandbox: SandboxServer, **ids: str) -> dict[str, Any]:
    """The merchant's signed query by `trade_id` and/or `mch_trade_id`."""
    return await call(http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID, **ids}, MERCHANT_KEY)


def test_independent_signer_matches_published_vector():
    """The test-side signer reproduces the protocol page's published test vector."""
    fields = {
        "appid": "wxd930ea5d5a258f4f",
        "mch_id": "10000100",
        "device_info": "1000",
        "body": "test",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    assert md5_sign(fields, "192006250b4c09247ec02edce69f6a2d") == (
        "9A0A8659F005D6984697E2CA0A9CF3B7"
    )


async def test_pay_signed_independently_is_accepted_and_answer_signed_over_data(sandbox, http):
    """A pay request signed by an independent implementation gets code 0 and a response signed
    over `data` with the merchant key, carrying realistic trade_id/token_id/pay_url/appid."""
    mch_trade_id = _mch()
    response = await call(
        http, sandbox.url, PAY, pay_fields(MERCHANT_ID, mch_trade_id), MERCHANT_KEY
    )
    assert response["code"] == 0, response
    assert response["version"] == "1.0" and response["sign_type"] == "md5"
    assert data_verifies(response, MERCHANT_KEY)
    assert not data_verifies(response, OTHER_MERCHANT_KEY)
    data = response["data"]
    assert data["mch_trade_id"] == mch_trade_id and data["merchant_id"] == MERCHANT_ID
    assert data["trade_id"].isdigit() and len(data["trade_id"]) == 24
    assert len(data["token_id"]) >= 24
    assert data["pay_url"] == f"{sandbox.url}/sandbox/cashier/{data['trade_id']}"
    assert data["appid"].isdigit() and len(data["appid"]) == 16


async def test_pay_with_one_altered_field_gets_101(sandbox, http):
    """Changing one field after signing makes the sandbox answer 101 with no data or sign."""
    fields = signed(pay_fields(MERCHANT_ID, _mch()), MERCHANT_KEY)
    fields["total_fee"] = 13
    status, response = await post_json(http, sandbox.url + PAY, fields)
    assert status == 200
    assert response["code"] == 101
    assert "data" not in response and "sign" not in response


async def test_signature_with_other_merchants_key_gets_101(sandbox, http):
    """A request signed with another merchant's key is refused with 101."""
    response = await call(
        http, sandbox.url, PAY, pay_fields(MERCHANT_ID, _mch()), OTHER_MERCHANT_KEY
    )
    assert response["code"] == 101


async def test_lowercase_signature_and_string_amount_are_accepted(sandbox, http):
    """Signatures compare case-insensitively and `total_fee` may be an integer string."""
    fields = pay_fields(MERCHANT_ID, _mch(), total_fee="12")
    body = {**fields, "sign": md5_sign(fields, MERCHANT_KEY).lower()}
    _, response = await post_json(http, sandbox.url + PAY, body)
    assert response["code"] == 0, response


async def test_malformed_json_gets_100(sandbox, http):
    """A body that is not a JSON object is answered with code 100."""
    for body in (b"{not json", b"[1, 2]"):
        status, response = await post_json(http, sandbox.url + PAY, body)
        assert (status, response["code"]) == (200, 100)


async def test_unknown_merchant_gets_200_before_signature_check(sandbox, http):
    """An unknown merchant gets 200 even though its signature cannot be checked."""
    response = await call(http, sandbox.url, PAY, pay_fields("999999", _mch()), "whatever")
    assert response["code"] == 200
    assert "999999" in response["msg"]


async def test_missing_required_fields_get_103_naming_the_field(sandbox, http):
    """Each missing required pay field gets 103 with the field named in `msg`."""
    for name in (
        "mch_trade_id",
        "body",
        "total_fee",
        "spbill_create_ip",
        "notify_url",
        "pay_type",
    ):
        fields = pay_fields(MERCHANT_ID, _mch())
        del fields[name]
        response = await call(http, sandbox.url, PAY, fields, MERCHANT_KEY)
        assert response["code"] == 103, (name, response)
        assert name in response["msg"]
    fields = pay_fields(MERCHANT_ID, _mch())
    del fields["buyer_logon_id"]
    response = await call(http, sandbox.url, PAY, fields, MERCHANT_KEY)
    assert response["code"] == 103 and "buyer_id or buyer_logon_id" in response["msg"]
    no_sign = pay_fields(MERCHANT_ID, _mch())
    _, response = await post_json(http, sandbox.url + PAY, no_sign)
    assert response["code"] == 103 and "sign" in response["msg"]
    _, response = await post_json(http, sandbox.url + PAY, {"total_fee": 1})
    assert response["code"] == 103 and "merchant_id" in response["msg"]


async def test_invalid_values_get_103_naming_the_field(sandbox, http):
    """Bad amounts, over-long ids and notify URLs that are relative, unparseable or could never
    be called are refused with 103 naming the field (never a raw HTTP 500)."""
    cases: dict[str, list[Any]] = {
        # Unicode digits: "²" (str.isdigit, but not int) and full-width "１２" (int takes it).
        "total_fee": [0, -5, 1.5, "12.00", True, "²", "１２"],
        "mch_trade_id": ["x" * 33],
        "notify_url": [
            "/pooul/notify",
            "ftp://example.com/n",
            "http://e.com/" + "a" * 250,
            "http://[bad/x",  # not parseable
            "http://example.com:99999/n",  # no such port
            "http://" + "h" * 64 + ".example/n",  # a host label longer than 63
        ],
        "time_expire": ["tomorrow", 123, "²" * 10, "١٧٠٠٠٠٠٠٠٠"],
        "nonce_str": ["n" * 33],
    }
    for name, values in cases.items():
        for value in values:
            fields = {**pay_fields(MERCHANT_ID, _mch()), name: value}
            response = await call(http, sandbox.url, PAY, fields, MERCHANT_KEY)
            assert response["code"] == 103, (name, value, response)
            assert name in response["msg"]


async def test_other_pay_type_gets_202(sandbox, http):
    """A pay_type other than alipay.jsapi is answered 202 (not enabled)."""
    fields = pay_fields(MERCHANT_ID, _mch(), pay_type="wechat.jsapi")
    response = await call(http, sandbox.url, PAY, fields, MERCHANT_KEY)
    assert response["code"] == 202 and "wechat.jsapi" in response["msg"]


async def test_duplicate_mch_trade_id_gets_107_whatever_the_amount(sandbox, http):
    """Reusing a merchant's mch_trade_id gets 107 even with another amount; another merchant may
    use the same mch_trade_id."""
    mch_trade_id = _mch()
    first = await call(http, sandbox.url, PAY, pay_fields(MERCHANT_ID, mch_trade_id), MERCHANT_KEY)
    assert first["code"] == 0
    for amount in (12, 99):
        again = await call(
            http,
            sandbox.url,
            PAY,
            pay_fields(MERCHANT_ID, mch_trade_id, total_fee=amount),
            MERCHANT_KEY,
        )
        assert again["code"] == 107 and mch_trade_id in again["msg"]
    other = await call(
        http, sandbox.url, PAY, pay_fields(OTHER_MERCHANT_ID, mch_trade_id), OTHER_MERCHANT_KEY
    )
    assert other["code"] == 0
    status, listed = await control(
        http, sandbox.url, "GET", f"/sandbox/orders?mch_trade_id={mch_trade_id}"
    )
    assert status == 200 and listed["count"] == 2


async def test_query_by_either_id_returns_the_signed_order(sandbox, http):
    """Query finds the order by trade_id or by mch_trade_id, signed over data, with the order's
    token_id/pay_url/appid (sandbox convenience)."""
    created = await _create(http, sandbox, attach="cart=42")
    for ids in (
        {"trade_id": created["trade_id"]},
        {"mch_trade_id": created["mch_trade_id"]},
    ):
        response = await _query(http, sandbox, **ids)
        assert response["code"] == 0, response
        assert data_verifies(response, MERCHANT_KEY)
        data = response["data"]
        assert data["trade_id"] == created["trade_id"]
        assert data["mch_trade_id"] == created["mch_trade_id"]
        assert data["trade_state"] == 2
        assert data["total_fee"] == 12 and data["fee_type"] == "CNY"
        assert data["attach"] == "cart=42"
        for name in ("token_id", "pay_url", "appid"):
            assert data[name] == created[name]
        assert "time_end" not in data and "out_trade_id" not in data


async def test_query_trade_id_wins_over_mch_trade_id(sandbox, http):
    """When both ids are given the trade_id decides, even if the mch_trade_id names another order."""
    first = await _create(http, sandbox)
    second = await _create(http, sandbox)
    response = await _query(
        http, sandbox, trade_id=first["trade_id"], mch_trade_id=second["mch_trade_id"]
    )
    assert response["data"]["trade_id"] == first["trade_id"]
    unknown = await _query(http, sandbox, trade_id="1" * 24, mch_trade_id=second["mch_trade_id"])
    assert unknown["code"] == 301
    # With a trade_id the mch_trade_id is not looked at, not even its length.
    response = await _query(http, sandbox, trade_id=first["trade_id"], mch_trade_id="x" * 40)
    assert response["code"] == 0 and response["data"]["trade_id"] == first["trade_id"]


async def test_query_unknown_or_foreign_order_gets_301_and_no_id_gets_103(sandbox, http):
    """Unknown orders and another merchant's orders are 301; a query without any id is 103."""
    created = await _create(http, sandbox)
    for fields, key in (
        ({"merchant_id": MERCHANT_ID, "mch_trade_id": "never-created"}, MERCHANT_KEY),
        ({"merchant_id": OTHER_MERCHANT_ID, "trade_id": created["trade_id"]}, OTHER_MERCHANT_KEY),
    ):
        response = await call(http, sandbox.url, QUERY, fields, key)
        assert response["code"] == 301, response
        assert "data" not in response
    response = await call(http, sandbox.url, QUERY, {"merchant_id": MERCHANT_ID}, MERCHANT_KEY)
    assert response["code"] == 103 and "trade_id or mch_trade_id" in response["msg"]


async def test_query_of_paid_order_carries_payment_fields(sandbox, http):
    """After a control-API payment the query shows state 0, channel ids, Unix time_end, buyer
    fields, a JSON-string fund_bill_list and yuan amounts."""
    created = await _create(http, sandbox, total_fee=1234, buyer_id="2088102146225135")
    before = int(time.time())
    status, _ = await control(
        http, sandbox.url, "POST", f"/sandbox/orders/{created['trade_id']}/pay"
    )
    assert status == 200
    response = await _query(http, sandbox, trade_id=created["trade_id"])
    assert data_verifies(response, MERCHANT_KEY)
    data = response["data"]
    assert data["trade_state"] == 0
    assert len(data["out_trade_id"]) == 28 and data["ch_trade_id"]
    assert before <= data["time_end"] <= int(time.time())
    assert data["buyer_user_id"] == "2088102146225135"
    assert data["buyer_logon_id"] == "138****1234"
    assert orjson.loads(data["fund_bill_list"]) == [
        {"fund_channel": "ALIPAYACCOUNT", "amount": "12.34"}
    ]
    assert data["buyer_pay_amount"] == "12.34" and data["receipt_amount"] == "12.34"
    assert data["total_fee"] == 1234


async def test_close_unpaid_order_then_paid_order_refused_with_600(sandbox, http):
    """Closing an unpaid order sets state 3 (idempotently); closing a paid one answers 600 with
    err_code ORDER_PAID and leaves it paid."""
    unpaid = await _create(http, sandbox)
    for _ in range(2):
        response = await call(
            http,
            sandbox.url,
            CLOSE,
            {"merchant_id": MERCHANT_ID, "mch_trade_id": unpaid["mch_trade_id"]},
            MERCHANT_KEY,
        )
        assert response["code"] == 0 and response["data"]["trade_state"] == 3
        assert data_verifies(response, MERCHANT_KEY)
    paid = await _create(http, sandbox)
    await control(http, sandbox.url, "POST", f"/sandbox/orders/{paid['trade_id']}/pay")
    response = await call(
        http,
        sandbox.url,
        CLOSE,
        {"merchant_id": MERCHANT_ID, "trade_id": paid["trade_id"]},
        MERCHANT_KEY,
    )
    assert response["code"] == 600 and response["err_code"] == "ORDER_PAID"
    assert "data" not in response
    _, order = await control(http, sandbox.url, "GET", f"/sandbox/orders/{paid['trade_id']}")
    assert order["trade_state"] == 0
    missing = await call(
        http, sandbox.url, CLOSE, {"merchant_id": MERCHANT_ID, "trade_id": "404"}, MERCHANT_KEY
    )
    assert missing["code"] == 301


async def test_rotated_keys_verify_with_any_and_sign_with_newest(make_sandbox, http):
    """During a key rotation requests signed with the older key pass, answers use the newest."""
    settings = sandbox_settings(
        pooul_merchant_keys=orjson.dumps({"777": ["new-key", "old-key"]}).decode()
    )
    server: SandboxServer = await make_sandbox(settings=settings)
    response = await call(http, server.url, PAY, pay_fields("777", _mch()), "old-key")
    assert response["code"] == 0
    assert data_verifies(response, "new-key") and not data_verifies(response, "old-key")


async def test_stats_count_calls_by_endpoint_and_code(sandbox, http):
    """`/sandbox/stats` counts gateway calls by endpoint and answered code."""
    await _create(http, sandbox)
    await _query(http, sandbox, trade_id="1")
    await post_json(http, sandbox.url + PAY, b"nope")
    status, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert status == 200
    assert stats["calls"]["pay"] == {"0": 1, "100": 1}
    assert stats["calls"]["query"] == {"301": 1}
    assert stats["orders"] == 1


async def test_server_answers_on_its_own_port_and_stops_twice(make_sandbox):
    """A stopped sandbox refuses connections, and a second stop is harmless."""
    server = await make_sandbox()
    url = server.url
    await server.stop()
    await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/sandbox/health")


async def test_past_max_orders_the_oldest_order_is_forgotten(make_sandbox, http):
    """A sandbox stays bounded: with room for two orders, a third makes the first unknown
    (code 301 by trade_id and by mch_trade_id), and the stats say so."""
    sandbox = await make_sandbox(settings=sandbox_settings(pooul_sandbox_max_orders=2))
    first, second, third = [await _create(http, sandbox) for _ in range(3)]
    for ids in ({"trade_id": first["trade_id"]}, {"mch_trade_id": first["mch_trade_id"]}):
        gone = await _query(http, sandbox, **ids)
        assert gone["code"] == 301, gone
    for kept in (second, third):
        response = await _query(http, sandbox, trade_id=kept["trade_id"])
        assert response["code"] == 0 and response["data"]["trade_id"] == kept["trade_id"]
    _, stats = await control(http, sandbox.url, "GET", "/sandbox/stats")
    assert (stats["orders"], stats["orders_evicted"], stats["max_orders"]) == (2, 1, 2)
    # Its mch_trade_id stays taken: a second order under it is the double payment.
    again = pay_fields(MERCHANT_ID, first["mch_trade_id"])
    reused = await call(http, sandbox.url, PAY, again, MERCHANT_KEY)
    assert reused["code"] == 107, reused


async def test_a_host_header_that_cannot_be_parsed_still_gets_an_order(sandbox, http):
    """`Host: h:99999` (no such port) is the caller's mistake, not a reason for HTTP 500: the
    order is created and its pay_url names the address the call came in on."""
    fields = signed(pay_fields(MERCHANT_ID, _mch()), MERCHANT_KEY)
    async with http.post(sandbox.url + PAY, json=fields, headers={"Host": "h:99999"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json(content_type=None)
    assert body["code"] == 0, body
    assert body["data"]["pay_url"].startswith("http://127.0.0.1:")


async def test_a_structure_nested_too_deep_to_sign_gets_101(sandbox, http):
    """A field nested past what the signing string renders (255 levels) cannot have been
    signed: code 101, never HTTP 500."""
    fields = {**pay_fields(MERCHANT_ID, _mch()), "sign": "00", "junk": "NESTED"}
    raw = orjson.dumps(fields).replace(b'"NESTED"', b"[" * 300 + b"]" * 300)
    async with http.post(sandbox.url + PAY, data=raw) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json(content_type=None)
    assert body["code"] == 101, body
