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

from worker.logs import BatchingStreamHandler, JsonFormatter, configure_logging


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
