"""Repeat, recovery and state judgements (worker/orders/decisions.py, state.py): pure."""

from __future__ import annotations

import pytest

from schemas.orders import OrderRequest
from schemas.pooul import OrderResponseData, QueryData
from worker.orders.decisions import (
    ORDER_TERMS,
    Conflict,
    check_late_repeat,
    check_repeat,
    new_order,
    order_terms,
    recover_order,
)
from worker.orders.state import StoredOrder, find_order, retain_until, with_order

MERCHANT = "888100000000001"
NOW = 1_750_000_000.0
TTL = 7200.0


def request(**changes) -> OrderRequest:
    fields = {
        "merchant_id": MERCHANT,
        "mch_trade_id": "T1",
        "body": "tea",
        "total_fee": 500,
        "spbill_create_ip": "10.0.0.1",
        "buyer_id": "2088",
        "notify_url": "http://n.example/",
        **changes,
    }
    return OrderRequest.model_validate(fields, strict=True)


def order(**changes) -> StoredOrder:
    fields = {
        "trade_id": "P1",
        "total_fee": 500,
        "token_id": "tok",
        "pay_url": "https://pay/1",
        "appid": "app",
        "created_at": NOW,
        "expires_at": NOW + TTL,
        "terms": order_terms(request()),
        **changes,
    }
    return StoredOrder(**fields)


def query_data(**changes) -> QueryData:
    fields = {
        "merchant_id": MERCHANT,
        "trade_id": "P9",
        "mch_trade_id": "T1",
        "trade_state": 2,
        "total_fee": "500",
        "token_id": "tok9",
        "pay_url": "https://pay/9",
        "appid": "app9",
        **changes,
    }
    return QueryData.model_validate(fields)


def test_new_order_takes_platform_ids_and_default_ttl():
    """A fresh success remembers the platform's ids and expires after the default TTL."""
    response = OrderResponseData.model_validate(
        {"trade_id": "P1", "token_id": "tok", "pay_url": "https://pay/1", "appid": "app"}
    )
    stored = new_order(request(), response, now=NOW, default_ttl=TTL)
    assert stored == order()


def test_new_order_expires_at_time_expire():
    """When the request gives time_expire, the order expires then, not after the TTL."""
    response = OrderResponseData.model_validate({"trade_id": "P1"})
    stored = new_order(request(time_expire=1_760_000_000), response, now=NOW, default_ttl=TTL)
    assert stored.expires_at == 1_760_000_000.0
    assert stored.token_id is None


def test_repeat_with_same_amount_is_the_same_order():
    """A repeat asking for the stored amount is no conflict."""
    assert check_repeat(order(), request()) is None


def test_repeat_with_other_amount_conflicts():
    """A repeat asking for another amount is a conflict naming both amounts and the order."""
    conflict = check_repeat(order(), request(total_fee=501))
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P1"
    assert "500 fen" in conflict.msg
    assert "501 fen" in conflict.msg


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("body", "coffee"),
        ("buyer_id", "2089"),
        ("buyer_logon_id", "a@example.com"),
        ("attach", "cart-2"),
        ("goods_tag", "promo"),
        ("limit_pay", "no_credit"),
        ("settle_type", 0),
    ],
)
def test_repeat_with_other_terms_conflicts(name, other):
    """A repeat of the same amount for another buyer, description, attach, ... is another order
    under a taken mch_trade_id: a conflict naming the field (never its values)."""
    conflict = check_repeat(order(), request(**{name: other}))
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P1"
    assert f"another {name};" in conflict.msg and "new mch_trade_id" in conflict.msg
    assert str(other) not in conflict.msg.replace("mch_trade_id", "")


def test_repeat_names_every_term_that_differs():
    conflict = check_repeat(order(), request(body="coffee", buyer_id="2089"))
    assert isinstance(conflict, Conflict)
    assert "another body, buyer_id;" in conflict.msg


@pytest.mark.parametrize(
    "changes",
    [
        {"spbill_create_ip": "10.9.9.9"},
        {"device_info": "pos-2"},
        {"time_expire": 1_760_000_000},
        {"notify_url": "http://other.example/"},
        {"request_id": "again"},
    ],
)
def test_repeat_may_differ_in_what_is_not_a_term(changes):
    """The buyer's address, device, a recomputed deadline, the notify URL and the request id
    may change between repeats: the same order."""
    assert check_repeat(order(), request(**changes)) is None


def test_repeat_of_an_entry_without_terms_is_judged_on_the_amount():
    """Entries kept before terms were (and terms a release did not know) are not held against
    a repeat."""
    assert check_repeat(order(terms=None), request(body="coffee")) is None
    assert check_repeat(order(terms={"buyer_id": "2088"}), request(body="coffee")) is None
    assert isinstance(check_repeat(order(terms={"body": "tea"}), request(body="coffee")), Conflict)


def test_order_terms_are_the_request_fields():
    assert set(order_terms(request())) == set(ORDER_TERMS) <= set(OrderRequest.model_fields)


def test_recovery_keeps_the_claiming_requests_terms():
    """After 107 the query does not tell the order's terms: the request that claims it sets them,
    so a later repeat with another description conflicts."""
    recovered = recover_order(request(attach="cart-1"), query_data(), now=NOW, default_ttl=TTL)
    assert isinstance(recovered, StoredOrder)
    assert recovered.terms == order_terms(request(attach="cart-1"))
    assert isinstance(check_repeat(recovered, request(attach="cart-2")), Conflict)


@pytest.mark.parametrize("state", [-1, 0, 1, 2, 6])
def test_late_repeat_of_an_order_not_ended_unpaid_is_the_same_order(state):
    """Past our expiry an order paid, refund requested, being paid or still unpaid (our expiry
    may not be the platform's; the trades worker closes it) is still answered `created`."""
    assert (
        check_late_repeat(order(), request(), query_data(trade_id="P1", trade_state=state)) is None
    )


@pytest.mark.parametrize("state", [3, 4, 5, 7])
def test_late_repeat_of_an_order_that_ended_unpaid_conflicts(state):
    conflict = check_late_repeat(order(), request(), query_data(trade_id="P1", trade_state=state))
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P1"
    assert f"(trade_state {state})" in conflict.msg and "new mch_trade_id" in conflict.msg


def test_late_repeat_answered_about_another_order_conflicts():
    conflict = check_late_repeat(order(), request(), query_data(trade_id="P9", trade_state=0))
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P9"
    assert "answered order P9, not the order P1" in conflict.msg


def test_recovery_of_our_order_keeps_its_ids():
    """After 107 the queried order with our merchant and amount is recovered with its ids."""
    recovered = recover_order(request(), query_data(), now=NOW, default_ttl=TTL)
    assert recovered == order(trade_id="P9", token_id="tok9", pay_url="https://pay/9", appid="app9")


def test_recovery_without_page_ids():
    """A query answer without token_id/pay_url/appid still recovers the order's trade_id."""
    data = QueryData.model_validate(
        {"merchant_id": MERCHANT, "trade_id": "P9", "trade_state": 2, "total_fee": 500}
    )
    recovered = recover_order(request(), data, now=NOW, default_ttl=TTL)
    assert isinstance(recovered, StoredOrder)
    assert (recovered.trade_id, recovered.token_id, recovered.pay_url) == ("P9", None, None)


def test_recovery_with_other_amount_conflicts():
    """After 107 an existing order of another amount is a conflict, not our order."""
    conflict = recover_order(request(), query_data(total_fee=700), now=NOW, default_ttl=TTL)
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P9"
    assert "700 fen" in conflict.msg


@pytest.mark.parametrize("state", [3, 4, 5, 7])
def test_recovery_of_an_order_that_ended_unpaid_conflicts(state):
    """After 107 an order that was closed, reversed, revoked or failed is not answered `created`
    (its pay_url cannot be paid): a conflict naming it and its state."""
    conflict = recover_order(request(), query_data(trade_state=state), now=NOW, default_ttl=TTL)
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P9"
    assert f"(trade_state {state})" in conflict.msg and "new mch_trade_id" in conflict.msg


@pytest.mark.parametrize("state", [0, 1, 2, 6])
def test_recovery_of_a_payable_or_paid_order_is_ours(state):
    """Not paid yet, paying, paid or refund requested: the order is recovered with its ids."""
    recovered = recover_order(request(), query_data(trade_state=state), now=NOW, default_ttl=TTL)
    assert isinstance(recovered, StoredOrder)
    assert recovered.trade_id == "P9"


def test_recovery_with_unknown_amount_conflicts():
    """An existing order whose amount the query does not give cannot be claimed as ours."""
    conflict = recover_order(request(), query_data(total_fee=None), now=NOW, default_ttl=TTL)
    assert isinstance(conflict, Conflict)
    assert "unknown amount" in conflict.msg


def test_recovery_with_other_or_no_merchant_conflicts():
    """An existing order of another merchant, or naming none, is a conflict."""
    conflict = recover_order(request(), query_data(merchant_id="777"), now=NOW, default_ttl=TTL)
    assert isinstance(conflict, Conflict)
    assert "merchant 777" in conflict.msg
    unnamed = recover_order(request(), query_data(merchant_id=""), now=NOW, default_ttl=TTL)
    assert isinstance(unnamed, Conflict)
    assert "(none given)" in unnamed.msg


def test_recovery_of_another_mch_trade_id_conflicts():
    """An answer about another mch_trade_id than the one queried is not our order."""
    conflict = recover_order(request(), query_data(mch_trade_id="T2"), now=NOW, default_ttl=TTL)
    assert isinstance(conflict, Conflict)
    assert conflict.trade_id == "P9"
    assert "mch_trade_id T2" in conflict.msg


def test_state_keeps_orders_per_merchant():
    """Orders under one mch_trade_id are kept per merchant and survive a JSON round trip."""
    state = with_order(None, MERCHANT, order())
    state = with_order(state, "other", order(trade_id="P2", expires_at=NOW + 10 * TTL))
    assert find_order(state, MERCHANT) == order()
    assert find_order(state, "other") == order(trade_id="P2", expires_at=NOW + 10 * TTL)
    assert find_order(state, "nobody") is None
    assert find_order(with_order(None, MERCHANT, order(terms=None)), MERCHANT) == order(terms=None)
    # An entry written before terms were kept reads with none.
    legacy = {k: v for k, v in order().to_json().items() if k != "terms"}
    assert find_order({"orders": {MERCHANT: legacy}}, MERCHANT) == order(terms=None)
    assert find_order(None, MERCHANT) is None
    assert find_order({"unexpected": 1}, MERCHANT) is None
    assert find_order({"orders": {MERCHANT: {"trade_id": "P1"}}}, MERCHANT) is None
    assert (
        find_order({"orders": {MERCHANT: {**order().to_json(), "total_fee": "x"}}}, MERCHANT)
        is None
    )
    assert retain_until(state, retention=60) == NOW + 10 * TTL + 60
    # Another merchant's entry this version cannot read is kept, and has no say in retention.
    unreadable = {"orders": {"other": {"trade_id": "P2"}, "third": "garbage"}}
    state = with_order(unreadable, MERCHANT, order())
    assert state["orders"]["other"] == {"trade_id": "P2"}
    assert retain_until(state, retention=60) == order().expires_at + 60


def test_a_pay_answer_about_another_order_is_not_taken():
    """A verified answer naming another mch_trade_id or merchant is not this request's order;
    ids the answer leaves out are not held against it."""
    from worker.orders.decisions import response_mismatch

    def answer(**fields) -> OrderResponseData:
        return OrderResponseData.model_validate({"trade_id": "P1", **fields})

    assert response_mismatch(request(), answer(mch_trade_id="T1", merchant_id=MERCHANT)) is None
    assert response_mismatch(request(), answer()) is None
    assert "mch_trade_id T2" in (response_mismatch(request(), answer(mch_trade_id="T2")) or "")
    assert "merchant 999" in (response_mismatch(request(), answer(merchant_id="999")) or "")
