"""`pooul-worker dev [--orders N] [--no-demo]`: the whole stack on a laptop, then a demo.

Ctrl-C (SIGINT) or SIGTERM stops every child (SIGTERM, then SIGKILL after
POOUL_DEV_STOP_GRACE), the broker last; a second Ctrl-C kills at once.
Exit code: 0 when the demo's check passed (or `--no-demo` ended by a signal), 1 when it failed
or a child died, 130 when interrupted during the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from worker.cli_types import positive_int
from worker.settings import Settings

__all__ = ["register"]

_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run broker, sandbox, ingress, orders and trades locally, then a short demo",
        description="Start an embedded Kafka-protocol broker, create the topics, start the "
        "sandbox, ingress, orders and trades workers as child processes, and (unless "
        "--no-demo) publish order requests, pay most of them in the sandbox and show the "
        "payment events. Child logs go to POOUL_DEV_DIR/logs (default .dev/logs).",
    )
    parser.add_argument(
        "--orders", type=positive_int, default=50, help="demo order requests (default 50)"
    )
    parser.add_argument(
        "--no-demo", action="store_true", help="just run the stack until Ctrl-C or SIGTERM"
    )
    parser.add_argument("--seed", type=int, help="make the demo's choices reproducible")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds the demo waits for every order's final event (default 60)",
    )
    parser.add_argument(
        "--expire-after",
        type=float,
        help="seconds until the demo's orders expire (their time_expire; default 6 + orders/25, "
        "so the buyer can pay every order first)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_main(args, settings))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so `pooul-worker --help` stays cheap.
    from worker.broker import BrokerUnavailableError
    from worker.dev.demo import run_demo
    from worker.dev.display import Progress, render_summary
    from worker.dev.processes import ChildExited
    from worker.dev.stack import DEMO_MERCHANTS, DevStack, StackOptions

    try:
        stack = DevStack(settings=settings, options=StackOptions(seed=args.seed))
    except BrokerUnavailableError as exc:
        _say(f"pooul-worker dev: {exc}")
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            _say("second interrupt: killing the stack now")
            stack.kill_now()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)

    _say(f"starting the local stack (logs in {stack.log_dir}/) ...")
    try:
        if not await _until_stopped(stack.start(), stop):
            _say("interrupted while starting")
            return _INTERRUPTED
        _say("stack is up:")
        for line in stack.endpoints.lines():
            _say(line)
        pids = " ".join(f"{c.name}={c.pid}" for c in stack.processes)
        _say(f"  {'pids':16} {pids}")
        if args.no_demo:
            _say("running until Ctrl-C (--no-demo)")
            await stack.watch(stop)
            return 0
        _say(f"demo: {args.orders} order requests ...")
        progress = Progress()
        demo = run_demo(
            settings=stack.settings,
            sandbox_url=stack.endpoints.sandbox_url,
            trades_metrics_url=stack.endpoints.metrics_urls.get("trades"),
            merchants=DEMO_MERCHANTS,
            orders=args.orders,
            seed=args.seed,
            wait_seconds=args.timeout,
            expire_after=(
                args.expire_after if args.expire_after is not None else 6 + args.orders / 25
            ),
            progress=progress,
        )
        demo_task = asyncio.create_task(demo)
        watch_task = asyncio.create_task(stack.watch(stop))
        await asyncio.wait({demo_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        progress.close()
        if not demo_task.done():
            demo_task.cancel()
            await asyncio.gather(demo_task, return_exceptions=True)
            watch_task.result()  # raises ChildExited when a child died
            _say("interrupted during the demo")
            return _INTERRUPTED
        watch_task.cancel()
        await asyncio.gather(watch_task, return_exceptions=True)
        report = demo_task.result()
        print(render_summary(report), flush=True)
        return 0 if report.ok else 1
    except ChildExited as exc:
        _say(f"pooul-worker dev: {exc}")
        return 1
    except TimeoutError as exc:
        _say(f"pooul-worker dev: {exc}")
        return 1
    except Exception as exc:  # say what failed in one line, then still stop the stack
        _say(f"pooul-worker dev: failed: {exc!r} (child logs in {stack.log_dir}/)")
        return 1
    finally:
        _say("stopping the stack ...")
        left = await stack.stop()
        _say(f"could not stop: {', '.join(left)}" if left else "stopped; no child process left")


async def _until_stopped(work: Any, stop: asyncio.Event) -> bool:
    """Run `work`; False (after cancelling it) when `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False
