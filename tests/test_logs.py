"""The batching log handler: routine lines in batches, warnings at once and in order."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from worker.logs import BatchingStreamHandler, JsonFormatter, configure_logging, log_line


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test-logs-{id(handler)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


@contextlib.contextmanager
def _batching(
    formatter: logging.Formatter | None = None, **options: Any
) -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """A logger writing through a BatchingStreamHandler into a string; closed afterwards."""
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, **options)
    if formatter is not None:
        handler.setFormatter(formatter)
    try:
        yield stream, _logger(handler)
    finally:
        handler.close()


def _eventually(condition: Callable[[], bool], failure: str) -> None:
    """Wait (up to 5 s) for `condition`, which another thread makes true."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)


def test_routine_lines_wait_and_a_warning_writes_everything_in_order() -> None:
    with _batching(JsonFormatter(), interval=60) as (stream, log):
        log.info("first", extra={"trade_id": "T1"})
        log.info("second")
        assert stream.getvalue() == ""  # no write per routine line
        log.warning("third")
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["msg"] for line in lines] == ["first", "second", "third"]
        assert lines[0]["trade_id"] == "T1"


def test_the_flusher_writes_routine_lines_within_its_interval() -> None:
    with _batching(interval=0.05) as (stream, log):
        log.info("routine")
        _eventually(lambda: "routine" in stream.getvalue(), "the flusher never wrote the line")


def test_a_full_buffer_is_written_without_waiting() -> None:
    with _batching(interval=60, max_pending=100) as (stream, log):
        for n in range(20):
            log.info(f"line {n:02d}")
        written = stream.getvalue().splitlines()
        assert written, "100 pending characters should have forced a write"
        assert written == [f"line {n:02d}" for n in range(len(written))]


def test_close_writes_the_rest_and_stops_the_flusher() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    log = _logger(handler)
    log.info("last words")
    flushers = _flushers()
    handler.close()
    assert stream.getvalue() == "last words\n"
    _eventually(lambda: _flushers() < flushers, "the flusher thread outlived its handler")


def test_configure_logging_again_retires_the_previous_handler() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        first = root.handlers[0]
        configure_logging("INFO", "text")
        assert root.handlers != [first]
        assert isinstance(first, BatchingStreamHandler) and first._stopping.is_set()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _flushers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "log-flusher")


def test_a_closed_stream_loses_lines_without_raising() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    log = _logger(handler)
    log.info("into the void")
    stream.close()
    log.warning("still no exception")  # forces a write to the closed stream
    handler.close()


@contextlib.contextmanager
def _configured(fmt: str, monkeypatch: Any) -> Iterator[io.StringIO]:
    """`configure_logging` writing into a string; the root logger restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    try:
        configure_logging("INFO", fmt)
        yield stream
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


_FIELDS = {
    "trade_id": "T1",
    "merchant_id": "888100000000001",
    "detail": None,
    "_private": "never written",
    "outcome": "success",
    "status": 200,
    "duration_ms": 1.25,
}


def _without_ts(text: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in text.splitlines()]
    for line in lines:
        assert line.pop("ts")
    return lines


def test_log_line_writes_what_the_logger_writes_without_a_record(monkeypatch) -> None:
    """Under `configure_logging`'s JSON setup the direct path makes no `LogRecord`, and its
    lines equal the ordinary ones, fields in order, at INFO (batched) and WARNING (at once)."""
    log = logging.getLogger("worker.test-log-line")
    with _configured("json", monkeypatch) as stream:
        log.info("notify", extra=_FIELDS)
        log.warning("notify", extra=_FIELDS)
        ordinary = _without_ts(stream.getvalue())
        stream.truncate(0)
        stream.seek(0)

        def no_records(*args: Any, **kwargs: Any) -> logging.LogRecord:
            raise AssertionError("the direct path built a LogRecord")

        monkeypatch.setattr(log, "makeRecord", no_records)
        log_line(log, logging.INFO, "notify", _FIELDS)
        assert stream.getvalue() == ""  # routine lines are batched, as before
        log_line(log, logging.WARNING, "notify", _FIELDS)
        log_line(log, logging.DEBUG, "not enabled", _FIELDS)
        direct = _without_ts(stream.getvalue())
    assert [list(line.items()) for line in direct] == [list(line.items()) for line in ordinary]
    assert [line["level"] for line in direct] == ["info", "warning"]
    assert "_private" not in direct[0]


def test_log_line_takes_the_ordinary_path_when_anything_else_listens(monkeypatch) -> None:
    """A capture handler on the root, a logger with its own handler, a filter, or the text
    format: every one of them still sees the line as a record."""
    log = logging.getLogger("worker.test-log-line.fallback")
    seen: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    with _configured("json", monkeypatch) as stream:
        root = logging.getLogger()
        capture = Capture()
        root.addHandler(capture)
        log_line(log, logging.INFO, "to the root's second handler", _FIELDS)
        root.removeHandler(capture)
        log.addHandler(capture)
        log_line(log, logging.INFO, "to the logger's own handler", _FIELDS)
        log.removeHandler(capture)

        def keep(record: logging.LogRecord) -> bool:
            seen.append(record)
            return True

        log.addFilter(keep)
        log_line(log, logging.INFO, "through a filter", _FIELDS)
        log.removeFilter(keep)
        root.handlers[0].flush()
        written = [line["msg"] for line in _without_ts(stream.getvalue())]
    assert [record.getMessage() for record in seen] == [
        "to the root's second handler",
        "to the logger's own handler",
        "through a filter",
    ]
    assert seen[0].trade_id == "T1"  # type: ignore[attr-defined]
    assert written == [record.getMessage() for record in seen]
    with _configured("text", monkeypatch) as stream:
        log_line(log, logging.WARNING, "as text", _FIELDS)
        assert "as text" in stream.getvalue() and "trade_id=T1" in stream.getvalue()


def test_log_line_never_raises_for_a_value_the_formatter_refuses(monkeypatch) -> None:
    """A field orjson cannot write (an integer past 64 bits) goes to the ordinary path, whose
    handler reports the problem; the caller (a notify already answered) never sees it."""
    log = logging.getLogger("worker.test-log-line.refused")
    monkeypatch.setattr(logging, "raiseExceptions", False)  # the ordinary path's report is quiet
    with _configured("json", monkeypatch):
        log_line(log, logging.WARNING, "notify", {"big": 2**70})
