"""Structured logging: one JSON object per line, fields passed with `extra=`.

    log.info("notify accepted", extra={"trade_id": t, "merchant_id": m, "outcome": "success"})
    log_line(log, logging.INFO, "notify", fields)   # the same line, for one-per-request logs

Never pass keys or full signatures.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson

__all__ = [
    "BatchingStreamHandler",
    "JsonFormatter",
    "configure_logging",
    "log_line",
]

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
# How many attributes `LogRecord.__init__` sets; `extra=` fields and later additions follow them.
_INIT_ATTR_COUNT = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", <extra fields in the order given>, "exc"?}` per record.

    Kept cheap because the ingress writes one line per request: the timestamp text is reused
    within a millisecond, and for a plain `LogRecord` the scan for `extra=` fields starts after
    the attributes its `__init__` sets (always the first ones of its `__dict__`, in a fixed
    number), so the output is the same as testing every attribute, in about a third of the time.
    """

    def __init__(self) -> None:
        super().__init__()
        # (millisecond, its text), swapped as one object so threads sharing a formatter agree.
        self._ts: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        attrs: Iterable[tuple[str, Any]] = record.__dict__.items()
        if type(record) is logging.LogRecord:
            attrs = islice(attrs, _INIT_ATTR_COUNT, None)
        return self.line(
            record.created,
            _LEVEL_NAMES.get(record.levelname) or record.levelname.lower(),
            record.name,
            record.getMessage(),
            attrs,
            exc=self.formatException(record.exc_info) if record.exc_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        msg: str,
        fields: Iterable[tuple[str, Any]],
        exc: str | None = None,
    ) -> str:
        """The JSON line, from a record's parts: `fields` are (name, value) pairs, of which
        standard record attributes and names starting with `_` are left out."""
        ts = self._ts
        if ts[0] != int(created * 1000):
            ts = (
                int(created * 1000),
                datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            )
            self._ts = ts
        entry: dict[str, Any] = {"ts": ts[1], "level": level, "logger": logger, "msg": msg}
        for name, value in fields:
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if exc:
            entry["exc"] = exc
        return orjson.dumps(entry, default=str).decode()


_LEVEL_NAMES = {name: name.lower() for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        )
        return f"{base} {extras}" if extras else base


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes routine lines in batches instead of one write per line.

    The ingress logs one line per notify; a write and a flush of stderr per line cost about a
    tenth of its CPU per request. Lines below WARNING wait in memory until a WARNING or worse
    arrives (written at once, after the lines before it, in order), `max_pending` characters
    are waiting, or the flusher thread's tick (`interval` seconds); `close()` and
    `logging.shutdown()` at exit write the rest. A SIGKILL loses at most one tick of routine
    lines, never a warning or an error.
    """

    def __init__(self, stream: Any, *, interval: float = 0.2, max_pending: int = 64 * 1024):
        super().__init__(stream)
        self._pending: list[str] = []
        self._pending_size = 0
        self._max_pending = max_pending
        self._stopping = threading.Event()
        threading.Thread(
            target=self._flush_every, args=(interval,), name="log-flusher", daemon=True
        ).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add_line(line, record.levelno)

    def add_line(self, line: str, levelno: int) -> None:
        """Queue one formatted line (written at once from WARNING up)."""
        with self.lock:  # type: ignore[union-attr]  # an RLock: `handle()` may already hold it
            self._pending.append(line)
            self._pending_size += len(line)
            if levelno >= logging.WARNING or self._pending_size >= self._max_pending:
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # an RLock: `emit` already holds it
            lines, self._pending, self._pending_size = self._pending, [], 0
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream loses the lines, never the caller's work

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        super().close()

    def _flush_every(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self.flush()


# The handler `configure_logging` installed on the root logger, for `log_line`'s direct path.
_configured: BatchingStreamHandler | None = None


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format; quiet the chatty client libraries."""
    global _configured
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, BatchingStreamHandler):
            previous.close()  # its flusher thread stops with it
    root.handlers[:] = [handler]
    _configured = handler
    root.setLevel(level)
    for noisy in ("aiokafka", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log_line(logger: logging.Logger, level: int, msg: str, fields: Mapping[str, Any]) -> None:
    """`logger.log(level, msg, extra=fields)`, writing the very same line.

    For a line per request (the ingress's notify line): when logging is what `configure_logging`
    set up with JSON — the root's one handler, no other handler or filter on the way — the line
    is formatted and queued directly, without a `LogRecord` and the handler chain, which cost
    about a tenth of the ingress's CPU per notify. Any other setup (text format, a test's
    capture handler, filters) takes the ordinary path.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _direct_handler(logger, level)
    if handler is None:
        logger.log(level, msg, extra=fields)
        return
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    level_name = _LEVEL_NAMES_BY_NUMBER.get(level) or logging.getLevelName(level).lower()
    try:
        line = formatter.line(time.time(), level_name, logger.name, msg, fields.items())
    except Exception:  # e.g. a value orjson refuses: the ordinary path reports it, never raises
        logger.log(level, msg, extra=fields)
        return
    handler.add_line(line, level)


_LEVEL_NAMES_BY_NUMBER = {getattr(logging, name): text for name, text in _LEVEL_NAMES.items()}


def _direct_handler(logger: logging.Logger, level: int) -> BatchingStreamHandler | None:
    """The configured JSON handler if a record from `logger` would reach it and nothing else."""
    handler = _configured
    root = logging.root
    if (
        handler is None
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or level < handler.level
        or len(root.handlers) != 1
        or root.handlers[0] is not handler
        or root.filters
    ):
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    return handler
