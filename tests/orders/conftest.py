"""Fixtures of the orders worker's tests (helpers live in `tests/orders/rig.py`)."""

from tests.orders.rig import make_rig

__all__ = ["make_rig"]
