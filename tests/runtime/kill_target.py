"""A worker process for the SIGKILL/SIGTERM tests: `python -m tests.runtime.kill_target OUT_FILE`.

Settings come from the environment (as in production). The handler appends `key,offset` to
OUT_FILE with one O_APPEND write per record (the kernel keeps it across SIGKILL) after a short
sleep, and keeps a per-key counter in state so restarts exercise the changelog restore.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from worker.logs import configure_logging
from worker.runtime import KeyContext, Record, StreamProcessor, run_worker
from worker.settings import load_settings


class AppendHandler:
    def __init__(self, fd: int, delay: float) -> None:
        self._fd = fd
        self._delay = delay
        self._rng = random.Random()

    async def handle(self, record: Record, ctx: KeyContext) -> None:
        await asyncio.sleep(self._delay * (0.5 + self._rng.random()))
        assert record.key is not None
        os.write(self._fd, b"%s,%d\n" % (record.key, record.offset))
        await ctx.set_state({"n": (ctx.state or {"n": 0})["n"] + 1, "last": record.offset})

    async def on_timer(self, ctx: KeyContext) -> None:
        raise AssertionError("no timers in this test")


async def main(out_path: str) -> None:
    settings = load_settings()
    configure_logging("WARNING", "text")
    fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        processor = StreamProcessor(
            settings=settings,
            topic=settings.pooul_topic_trade_signals,
            group_id=os.environ["KILL_TEST_GROUP"],
            handler=AppendHandler(fd, float(os.environ.get("HANDLER_DELAY", "0.02"))),
            state_topic=settings.pooul_topic_trade_state,
            name="kill-target",
        )
        await run_worker(processor)
    finally:
        os.close(fd)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
