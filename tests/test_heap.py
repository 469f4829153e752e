"""The startup heap freeze: later full collections skip startup objects, garbage still goes."""

from __future__ import annotations

import gc

from worker.heap import freeze_startup_heap


def test_startup_objects_leave_the_collector_and_new_cycles_are_still_collected() -> None:
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000  # the imported modules, classes, schemas
        assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()

        class Node:
            other: object

        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle: only the collector can free it
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
