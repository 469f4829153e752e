"""Test-side notify bodies and a topic reader for the ingress tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition

from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY
from worker.kafka import make_consumer
from worker.pooul.signing import sign
from worker.settings import Settings

NOTIFY_PATH = "/pooul/notify"


def notify_data(**overrides: Any) -> dict[str, Any]:
    """A realistic `data` object of an alipay.jsapi notify (loose types, Chinese text, JSON string)."""
    suffix = uuid.uuid4().hex[:16]
    data: dict[str, Any] = {
        "merchant_id": MERCHANT_ID,
        "trade_id": f"T{suffix}",
        "mch_trade_id": f"M{suffix}",
        "out_trade_id": f"O{suffix}",
        "ch_trade_id": f"2026{suffix}",
        "pay_type": "alipay.jsapi",
        "trade_state": 0,
        "total_fee": "12",
        "fee_type": "CNY",
        "time_end": 1795600000,
        "nonce_str": "ibuaiVcKdpRxkhJA",
        "attach": "云南普洱 357g & more",
        "buyer_logon_id": "138****1234",
        "buyer_user_id": "2088102146225135",
        "fund_bill_list": '[{"fund_channel":"ALIPAYACCOUNT","amount":"0.12"}]',
        "bank_type": None,
    }
    data.update(overrides)
    return data


def envelope(data: dict[str, Any], *, key: str = MERCHANT_KEY, **overrides: Any) -> dict[str, Any]:
    """The notify envelope with `sign` computed over `data` (override `sign` to forge it)."""
    body: dict[str, Any] = {
        "code": 0,
        "msg": None,
        "data": data,
        "version": "1.0",
        "sign_type": "md5",
        "sign": sign(data, key),
    }
    body.update(overrides)
    return body


def signed_notify(*, key: str = MERCHANT_KEY, **data_overrides: Any) -> tuple[str, bytes]:
    """(trade_id, raw body) of a correctly signed notify, pretty-printed so the raw bytes differ
    from any re-serialisation."""
    data = notify_data(**data_overrides)
    raw = orjson.dumps(envelope(data, key=key), option=orjson.OPT_INDENT_2)
    return str(data["trade_id"]), raw


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, **kwargs: Any
) -> tuple[int, str, str]:
    """POST to the notify path; (status, body text, content type)."""
    async with http.post(url + NOTIFY_PATH, data=body, **kwargs) as response:
        return response.status, await response.text(), response.content_type


@dataclass(frozen=True)
class Written:
    """One record read back from the trade-signals topic."""

    partition: int
    key: bytes  # every trade signal has one (b"" would mean a keyless record)
    value: bytes
    headers: dict[str, bytes]


async def topic_records(settings: Settings) -> list[Written]:
    """Every record on the trade-signals topic, read from the beginning of each partition."""
    topic = settings.pooul_topic_trade_signals
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Written] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp_records in batch.values():
                records.extend(
                    Written(
                        partition=r.partition,
                        key=r.key or b"",
                        value=r.value,
                        headers={name: value for name, value in r.headers},
                    )
                    for r in tp_records
                )
        return records
    finally:
        await consumer.stop()


async def record_count(settings: Settings) -> int:
    """Records on the trade-signals topic (sum of end offsets; the topics are fresh per test)."""
    topic = settings.pooul_topic_trade_signals
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()
