"""The ingress over real HTTP with a real broker: what gets `success`, what gets `fail`, and
what ends up on the trade-signals topic."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
import pytest

from schemas.signals import KIND_HEADER, MERCHANT_HEADER, NotifySignal, parse_trade_signal
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, OTHER_MERCHANT_KEY
from tests.ingress.helpers import (
    NOTIFY_PATH,
    envelope,
    notify_data,
    post,
    record_count,
    signed_notify,
    topic_records,
)


async def test_signed_notify_is_acknowledged_written_once_and_kept_raw(
    ingress, ingress_settings, http
):
    """A correctly signed notify gets `success` (text/plain, 200) and exactly one record keyed by
    trade_id whose value keeps the raw body byte for byte."""
    trade_id, body = signed_notify()
    assert await post(http, ingress.url, body) == (200, "success", "text/plain")
    [record] = await topic_records(ingress_settings)
    assert record.key == trade_id.encode()
    assert record.headers[KIND_HEADER] == b"notify"
    assert record.headers[MERCHANT_HEADER] == MERCHANT_ID.encode()
    signal = parse_trade_signal(record.value)
    assert isinstance(signal, NotifySignal)
    assert signal.kind == "notify" and signal.trade_id == trade_id
    assert signal.merchant_id == MERCHANT_ID
    assert signal.body.encode() == body
    assert signal.received_at.tzinfo is not None


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "application/x-www-form-urlencoded", None],
)
async def test_the_body_is_json_whatever_the_content_type_says(ingress, http, content_type):
    """The body is parsed as JSON whatever Content-Type the sender declared (or none)."""
    _, body = signed_notify()
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    status, text, _ = await post(http, ingress.url, body, headers=headers)
    assert (status, text) == (200, "success")


def _altered_field() -> bytes:
    data = notify_data()
    forged = envelope(data)
    forged["data"] = {**data, "trade_state": 0, "total_fee": "99999"}
    return orjson.dumps(forged)


def _missing_trade_id() -> bytes:
    data = notify_data()
    del data["trade_id"]
    return orjson.dumps(envelope(data))


def _oversized() -> bytes:
    # Correctly signed: only its size is wrong, and size is checked first.
    return signed_notify(attach="x" * 70_000)[1]


def _deeply_nested() -> bytes:
    # Past what the signing string's JSON renderer takes (255 levels); orjson parses it.
    forged = envelope(notify_data())
    forged["data"]["junk"] = "NESTED"
    return orjson.dumps(forged).replace(b'"NESTED"', b"[" * 300 + b"]" * 300)


REJECTIONS = {
    "altered_field": (_altered_field, 403),
    "deeply_nested": (_deeply_nested, 403),
    "wrong_key": (lambda: signed_notify(key=OTHER_MERCHANT_KEY)[1], 403),
    "unsigned": (lambda: orjson.dumps({**envelope(notify_data()), "sign": None}), 403),
    "unknown_merchant": (lambda: signed_notify(merchant_id="888199999999999")[1], 404),
    "malformed_json": (lambda: signed_notify()[1][:-3], 400),
    "not_an_object": (lambda: b'["success"]', 400),
    "missing_trade_id": (_missing_trade_id, 400),
    "oversized": (_oversized, 413),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
async def test_bad_notifies_get_a_4xx_fail_and_nothing_is_produced(
    ingress, ingress_settings, http, case
):
    """Each kind of bad notify is answered `fail` with its documented status and leaves the topic
    untouched (a good notify sent afterwards is the only record)."""
    build, expected_status = REJECTIONS[case]
    status, text, _ = await post(http, ingress.url, build())
    assert (status, text) == (expected_status, "fail")
    good_trade, good_body = signed_notify()
    assert (await post(http, ingress.url, good_body))[:2] == (200, "success")
    assert [r.key for r in await topic_records(ingress_settings)] == [good_trade.encode()]


async def test_an_oversized_chunked_body_is_refused_without_a_content_length(
    ingress, ingress_settings, http
):
    """A body streamed in chunks (no Content-Length) is cut off at the cap with 413."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 4096  # 160 KiB of JSON whitespace, well past the 64 KiB cap

    async with http.post(ingress.url + NOTIFY_PATH, data=chunks()) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert (response.status, await response.text()) == (413, "fail")
    assert await record_count(ingress_settings) == 0


async def test_a_stalled_body_is_answered_408_within_the_read_timeout(ingress, ingress_settings):
    """A sender that stops halfway through its body gets 408 `fail` instead of holding the request."""
    _, body = signed_notify()
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
    try:
        writer.write(
            f"POST {NOTIFY_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408")
            assert (await reader.read(4)) == b"fail"
    finally:
        writer.close()
    assert await record_count(ingress_settings) == 0


async def test_a_sender_hanging_up_mid_body_is_client_gone_not_an_internal_error(
    ingress, ingress_settings, caplog
):
    """A connection closed halfway through the body is a network hiccup: counted and logged as
    `client_gone` (a warning without a traceback), never `internal_error`; nothing written."""
    caplog.set_level(logging.INFO, logger="worker.ingress")
    _, body = signed_notify()
    _, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
    writer.write(
        f"POST {NOTIFY_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await wait_for_count(ingress, "client_gone")
    assert ingress.metrics.count("internal_error") == 0
    [line] = [
        r for r in caplog.records if r.name == "worker.ingress" and r.getMessage() == "notify"
    ]
    assert (line.levelno, line.outcome, line.status) == (logging.WARNING, "client_gone", 499)  # type: ignore[attr-defined]
    assert not any(r.exc_info for r in caplog.records if r.name == "worker.ingress")
    assert await record_count(ingress_settings) == 0


async def wait_for_count(ingress, outcome: str, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while ingress.metrics.count(outcome) < 1:  # noqa: ASYNC110 - polling a metric
            await asyncio.sleep(0.01)


async def test_the_same_notify_ten_times_is_acknowledged_ten_times(ingress, ingress_settings, http):
    """Repeated deliveries all get `success` and are all written: deduplication happens downstream."""
    trade_id, body = signed_notify()
    answers = [await post(http, ingress.url, body) for _ in range(10)]
    assert answers == [(200, "success", "text/plain")] * 10
    records = await topic_records(ingress_settings)
    assert len(records) == 10
    assert {r.key for r in records} == {trade_id.encode()}
    assert len({r.partition for r in records}) == 1


async def test_concurrent_notifies_share_batches_and_each_waits_for_its_ack(
    ingress, ingress_settings, http
):
    """Two hundred concurrent notifies are all acknowledged, all on the topic, one produce latency
    observation each."""
    notifies = [signed_notify() for _ in range(200)]
    answers = await asyncio.gather(*(post(http, ingress.url, body) for _, body in notifies))
    assert {a[:2] for a in answers} == {(200, "success")}
    records = await topic_records(ingress_settings)
    assert sorted(r.key for r in records) == sorted(t.encode() for t, _ in notifies)
    registry = ingress.metrics.registry
    assert registry.get_sample_value("pooul_ingress_produce_seconds_count") == 200
    assert ingress.metrics.count("success") == 200


async def test_health_readiness_and_metrics_endpoints(ingress, http):
    """/healthz answers, /readyz is ready with a reachable broker, /metrics counts outcomes."""
    async with http.get(ingress.url + "/healthz") as response:
        assert (response.status, await response.text()) == (200, "ok")
    async with http.get(ingress.url + "/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"ready": True, "reason": "ok"}
    await post(http, ingress.url, signed_notify()[1])
    await post(http, ingress.url, signed_notify(key=OTHER_MERCHANT_KEY)[1])
    await post(http, ingress.url, b"{")
    async with http.get(ingress.url + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert 'pooul_ingress_requests_total{outcome="success"} 1.0' in text
    assert 'pooul_ingress_requests_total{outcome="bad_signature"} 1.0' in text
    assert 'pooul_ingress_requests_total{outcome="malformed_json"} 1.0' in text
    assert 'pooul_ingress_requests_total{outcome="broker_timeout"} 0.0' in text
    assert "pooul_ingress_produce_seconds_count 1.0" in text
    assert "pooul_ingress_in_flight_requests 0.0" in text
    assert "pooul_ingress_broker_ready 1.0" in text


async def test_only_post_is_accepted_on_the_notify_path(ingress, http):
    """GET on the notify path is 405 (aiohttp's routing), never `success`."""
    async with http.get(ingress.url + NOTIFY_PATH) as response:
        assert response.status == 405


async def test_readiness_is_off_while_draining(ingress, http):
    """Once shutdown has begun /readyz answers 503 even though the broker is fine."""
    from worker.ingress.app import STATE_KEY

    ingress.app[STATE_KEY].draining = True
    async with http.get(ingress.url + "/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"ready": False, "reason": "shutting down"}


async def test_one_log_line_per_notify_without_secrets(ingress, http, caplog):
    """Every notify leaves one `notify` line with trade_id, merchant_id and outcome, and neither
    the merchant key nor a full signature appears in any log record."""
    caplog.set_level(logging.INFO, logger="worker.ingress")
    good_trade, good = signed_notify()
    forged_trade, forged = signed_notify(key=OTHER_MERCHANT_KEY)
    for body in (good, forged, b"{"):
        await post(http, ingress.url, body)
    lines = [r for r in caplog.records if r.name == "worker.ingress" and r.getMessage() == "notify"]
    assert [(r.trade_id, r.merchant_id, r.outcome) for r in lines] == [
        (good_trade, MERCHANT_ID, "success"),
        (forged_trade, MERCHANT_ID, "bad_signature"),
        (None, None, "malformed_json"),
    ]
    signatures = {orjson.loads(b)["sign"] for b in (good, forged)}
    for record in caplog.records:
        text = str(record.__dict__)
        assert MERCHANT_KEY not in text and OTHER_MERCHANT_KEY not in text
        assert not any(s in text for s in signatures)


async def test_a_notify_signed_over_number_text_parsing_rewrites_is_accepted(
    ingress, ingress_settings, http
):
    """`"point_amount": 0.10` reads as 0.1; signed over the text the platform sent, the notify
    still verifies (the signature is checked over `data` as received) and is written intact."""
    import hashlib

    data = {**notify_data(), "point_amount": "__NUMBER__"}
    text_pairs = [
        (name, "0.10" if name == "point_amount" else str(value))
        for name, value in data.items()
        if value is not None
    ]
    canonical = "&".join(f"{n}={t}" for n, t in sorted(text_pairs) if t != "")
    signature = hashlib.md5(f"{canonical}&key={MERCHANT_KEY}".encode()).hexdigest().upper()
    body = orjson.dumps({"code": 0, "data": data, "sign": signature}).replace(
        b'"__NUMBER__"', b"0.10"
    )
    assert await post(http, ingress.url, body) == (200, "success", "text/plain")
    [record] = await topic_records(ingress_settings)
    assert parse_trade_signal(record.value).body == body.decode()  # type: ignore[union-attr]
    tampered = body.replace(b"0.10", b"0.20")
    assert (await post(http, ingress.url, tampered))[:2] == (403, "fail")
