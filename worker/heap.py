"""Keep the garbage collector's full passes short in long-running roles.

    await server.start()
    freeze_startup_heap()      # once the role is serving

A full (generation 2) collection walks every object the collector tracks. After its imports a
role holds about 60,000 of them (pydantic's schemas, aiokafka's protocol classes, aiohttp), all
alive until exit: a full pass over them takes ~18 ms on an idle core and was measured at 30–110 ms
on the benchmark's busy 2-core machine, stalling every request and record in flight — it was
the tail of the trades worker's notify→event latency. `gc.freeze()` moves the objects alive at
the end of startup to the permanent generation, which no collection visits; objects created
later are collected as usual, and reference counting still frees anything frozen that is not in
a reference cycle.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Collect startup garbage once, then exempt every surviving object from later passes."""
    gc.collect()
    gc.freeze()
