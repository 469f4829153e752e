"""`pooul-worker dev`: the local stack (broker, sandbox, ingress, orders, trades) and its demo.

- `processes` — `ChildProcess`: one role as an OS process in its own process group.
- `stack` — `DevStack`: starts the roles with a shared environment, stops them, broker last.
- `demo` — `run_demo`: order requests in, a simulated buyer, payment events counted by id.
- `display` — the progress line and the summary table.
- `cli` — the `dev` sub-command.
"""

from worker.dev.demo import DemoReport, run_demo
from worker.dev.processes import ChildExited, ChildProcess
from worker.dev.stack import DevStack, StackOptions

__all__ = ["ChildExited", "ChildProcess", "DemoReport", "DevStack", "StackOptions", "run_demo"]
