"""Bad requests through the real worker: `rejected` naming the field, dead letters for garbage."""

from __future__ import annotations

import time

import orjson

from schemas.dead_letter import parse_dead_letter
from schemas.orders import OrderCreated, OrderRejected
from tests.orders.rig import metric, order_request, running_orders


async def test_invalid_requests_are_rejected_without_platform_calls(make_rig):
    """Each broken rule answers `rejected` naming its field, and Pooul is never called."""
    rig = await make_rig()
    cases = {
        "total_fee": order_request(total_fee=0),
        "buyer_id": order_request(buyer_id=...),
        "pay_type": order_request(pay_type="wx.jsapi"),
        "spbill_create_ip": order_request(spbill_create_ip="localhost"),
        "merchant_id": order_request(merchant_id="999999"),
        "time_expire": order_request(time_expire=int(time.time()) - 60),
        "mch_trade_id": order_request(mch_trade_id="x" * 33),
    }
    async with running_orders(rig.settings) as registry:
        for payload in cases.values():
            await rig.send(payload)
        await rig.send(order_request(mch_trade_id="KEYED"), key="another-key")
        received = await rig.results(len(cases) + 1)
    by_key = {record.key: result for record, result in received}
    for field, payload in cases.items():
        result = by_key[payload["mch_trade_id"].encode()]
        assert isinstance(result, OrderRejected), field
        assert [e.field for e in result.errors] == [field], result.errors
    mismatch = by_key[b"another-key"]
    assert isinstance(mismatch, OrderRejected)
    assert [(e.field, e.type) for e in mismatch.errors] == [("mch_trade_id", "key_mismatch")]
    assert await rig.pay_calls() == {}
    assert (
        metric(registry, "pooul_orders_results_total", outcome="rejected", path="validation") == 8
    )


async def test_unparseable_request_is_dead_lettered_and_the_key_moves_on(make_rig):
    """Not-JSON and non-object values go to the dead letters; the next request is served."""
    rig = await make_rig()
    valid = order_request(mch_trade_id="AFTER-POISON")
    async with running_orders(rig.settings):
        await rig.send(b"{not json", key="AFTER-POISON")
        await rig.send(b"[1, 2]", key="AFTER-POISON")
        await rig.send(valid)
        letters = await rig.dead_letters(2)
        [(_, result)] = await rig.results(1)
    parsed = [parse_dead_letter(letter.value or b"") for letter in letters]
    assert [p.reason for p in parsed] == ["unparseable_order_request"] * 2
    assert "not JSON" in parsed[0].detail
    assert "not an object" in parsed[1].detail
    assert parsed[0].value is not None and parsed[0].value.data == "{not json"
    assert isinstance(result, OrderCreated)


async def test_request_id_header_is_echoed(make_rig):
    """A request id given only as the `pooul-request-id` header comes back in the result."""
    rig = await make_rig()
    request = order_request()
    async with running_orders(rig.settings):
        await rig.send(request, headers=[("pooul-request-id", b"hdr-42")])
        [(record, result)] = await rig.results(1)
        [signal] = await rig.signals(1)
    assert result.request_id == "hdr-42"
    assert record.headers["pooul-request-id"] == b"hdr-42"
    assert signal.headers["pooul-request-id"] == b"hdr-42"
    assert orjson.loads(signal.value or b"")["request_id"] == "hdr-42"
