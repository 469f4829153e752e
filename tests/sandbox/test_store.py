"""The sandbox's order store: uniqueness per merchant and its bound on memory."""

from __future__ import annotations

import pytest

from worker.sandbox.store import Order, OrderStore


def _order(n: int, merchant_id: str = "888100000001", mch_trade_id: str | None = None) -> Order:
    return Order(
        trade_id=f"T{n}",
        merchant_id=merchant_id,
        mch_trade_id=mch_trade_id or f"M{n}",
        pay_type="alipay.jsapi",
        body="tea",
        total_fee=100,
        notify_url="http://127.0.0.1/notify",
        spbill_create_ip="10.0.0.1",
        token_id=f"tok{n}",
        pay_url=f"http://127.0.0.1/cashier/T{n}",
        appid="2016000000000001",
        created_at=0.0,
    )


def test_a_mch_trade_id_is_unique_per_merchant() -> None:
    store = OrderStore()
    store.add(_order(1))
    with pytest.raises(KeyError, match="M1"):
        store.add(_order(2, mch_trade_id="M1"))
    store.add(_order(3, merchant_id="888100000002", mch_trade_id="M1"))  # another merchant's
    assert len(store) == 2


def test_past_the_limit_the_oldest_orders_are_forgotten_whole() -> None:
    store = OrderStore(max_orders=3)
    for n in range(5):
        store.add(_order(n))
    assert len(store) == 3 and store.evicted == 2
    assert "T0" not in store and "T1" not in store
    assert store.by_mch_trade_id("888100000001", "M0") is None  # the index forgets it too
    assert [o.trade_id for o in store.find()] == ["T2", "T3", "T4"]
    # ...but not that its mch_trade_id was used: never twice, as on the platform.
    assert store.mch_trade_id_used("888100000001", "M0")
    with pytest.raises(KeyError, match="M0"):
        store.add(_order(9, mch_trade_id="M0"))
    assert not store.mch_trade_id_used("888100000001", "M99")


def test_forgotten_mch_trade_ids_are_bounded_too() -> None:
    """Ten forgotten ids are remembered per order kept; past that the oldest go."""
    store = OrderStore(max_orders=1)
    for n in range(13):
        store.add(_order(n))
    assert store.evicted == 12
    assert not store.mch_trade_id_used("888100000001", "M0")
    assert not store.mch_trade_id_used("888100000001", "M1")
    assert all(store.mch_trade_id_used("888100000001", f"M{n}") for n in range(2, 13))


def test_without_a_limit_nothing_is_forgotten() -> None:
    store = OrderStore()
    for n in range(1000):
        store.add(_order(n))
    assert len(store) == 1000 and store.evicted == 0


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="max_orders"):
        OrderStore(max_orders=limit)
