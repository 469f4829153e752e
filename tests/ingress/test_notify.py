"""The pure verification pipeline: every rejection reason, key rotation, and the record built."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from schemas.signals import KIND_HEADER, MERCHANT_HEADER, NotifySignal, parse_trade_signal
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, OTHER_MERCHANT_ID, OTHER_MERCHANT_KEY
from tests.ingress.helpers import envelope, notify_data, signed_notify
from worker.ingress.errors import NotifyRejected, Reason
from worker.ingress.notify import build_record, verify_notify
from worker.pooul.signing import sign
from worker.settings import MerchantKeys

KEYS = MerchantKeys({MERCHANT_ID: [MERCHANT_KEY], OTHER_MERCHANT_ID: [OTHER_MERCHANT_KEY]})


def _reason(body: bytes, keys: MerchantKeys = KEYS) -> str:
    with pytest.raises(NotifyRejected) as caught:
        verify_notify(body, keys=keys)
    return caught.value.reason


def test_a_signed_notify_verifies_and_keeps_the_exact_body():
    """A correctly signed notify yields its identifiers as text and the untouched raw body."""
    trade_id, body = signed_notify(trade_state=0)
    notify = verify_notify(body, keys=KEYS)
    assert notify.trade_id == trade_id
    assert notify.merchant_id == MERCHANT_ID
    assert notify.trade_state == "0"
    assert notify.mch_trade_id.startswith("M")
    assert notify.body is body


def test_any_active_key_verifies_during_rotation():
    """A notify signed with the older of two active keys still verifies."""
    rotating = MerchantKeys({MERCHANT_ID: ["new-key-0000", MERCHANT_KEY]})
    _, body = signed_notify(key=MERCHANT_KEY)
    assert verify_notify(body, keys=rotating).merchant_id == MERCHANT_ID
    _, unknown_key_body = signed_notify(key="retired-key-1111")
    assert _reason(unknown_key_body, rotating) == Reason.BAD_SIGNATURE


def test_signature_is_checked_over_fields_the_docs_do_not_list():
    """A field the platform added is covered by the signature: signed it passes, added later it fails."""
    data = notify_data(promotion_detail="[]")
    body = orjson.dumps(envelope(data))
    assert verify_notify(body, keys=KEYS).trade_id == data["trade_id"]
    injected = envelope(notify_data())  # signed first, then a field slipped in
    injected["data"]["promotion_detail"] = "[]"
    assert _reason(orjson.dumps(injected)) == Reason.BAD_SIGNATURE


def test_signature_case_and_null_fields_follow_the_protocol():
    """Lower-case hex verifies, and null/empty fields are outside the signature as documented."""
    data = notify_data(attach=None, device_info="")
    body = orjson.dumps(envelope(data, sign=sign(data, MERCHANT_KEY).lower()))
    assert verify_notify(body, keys=KEYS).trade_id == data["trade_id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b'{"data": "\xff\xfe"}', Reason.MALFORMED_JSON),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'"success"', Reason.NOT_AN_OBJECT),
        (orjson.dumps({"code": 100, "msg": "JSON parse error"}), Reason.ENVELOPE_CODE),
        (orjson.dumps({"code": True, "data": {}}), Reason.ENVELOPE_CODE),
        (orjson.dumps({"code": 0, "sign": "AB"}), Reason.MISSING_DATA),
        (orjson.dumps({"code": 0, "data": [1], "sign": "AB"}), Reason.MISSING_DATA),
        (orjson.dumps({"code": 0, "data": {"trade_id": "T1"}, "sign": "AB"}), Reason.MISSING_FIELD),
        (orjson.dumps({"data": {"merchant_id": {"a": 1}}, "sign": "AB"}), Reason.BAD_FIELD),
        (orjson.dumps({"data": {"merchant_id": "999"}, "sign": "AB"}), Reason.UNKNOWN_MERCHANT),
        (orjson.dumps({"data": {"merchant_id": MERCHANT_ID}}), Reason.MISSING_SIGNATURE),
        (
            orjson.dumps({"data": {"merchant_id": MERCHANT_ID}, "sign": 12}),
            Reason.MISSING_SIGNATURE,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_envelopes_are_rejected_with_a_specific_reason(body, reason):
    """Each kind of malformed envelope is refused with its own reason and a 4xx status."""
    assert _reason(body) == reason
    assert 400 <= Reason(reason).status < 500


def test_one_altered_field_breaks_the_signature():
    """Changing the amount after signing is caught, whatever else is right."""
    data = notify_data()
    forged = envelope(data)
    forged["data"] = {**data, "total_fee": "1200"}
    assert _reason(orjson.dumps(forged)) == Reason.BAD_SIGNATURE


def test_another_merchants_key_is_refused():
    """A notify for one merchant signed with another merchant's key does not verify."""
    _, body = signed_notify(key=OTHER_MERCHANT_KEY)
    assert _reason(body) == Reason.BAD_SIGNATURE


def test_required_fields_are_checked_after_the_signature():
    """A signed notify without trade_id is `missing_field`; unsigned, it is `bad_signature`."""
    data = notify_data()
    del data["trade_id"]
    assert _reason(orjson.dumps(envelope(data))) == Reason.MISSING_FIELD
    assert _reason(orjson.dumps(envelope(data, sign="0" * 32))) == Reason.BAD_SIGNATURE
    for name in ("mch_trade_id", "trade_state"):
        assert _reason(orjson.dumps(envelope(notify_data(**{name: ""})))) == Reason.MISSING_FIELD
    assert _reason(orjson.dumps(envelope(notify_data(trade_id=1.5)))) == Reason.BAD_FIELD
    assert _reason(orjson.dumps(envelope(notify_data(trade_state=False)))) == Reason.BAD_FIELD


def test_rejections_carry_claimed_ids_for_the_log_but_clip_them():
    """An unknown merchant's claimed ids reach the rejection, cut to a loggable length."""
    body = orjson.dumps({"data": {"merchant_id": "9" * 500, "trade_id": "T1"}, "sign": "AB"})
    with pytest.raises(NotifyRejected) as caught:
        verify_notify(body, keys=KEYS)
    assert caught.value.trade_id == "T1"
    assert caught.value.merchant_id is not None and len(caught.value.merchant_id) <= 65


def test_statuses_are_the_documented_ones():
    """Signature problems are 403, unknown merchants 404, size 413, slow bodies 408, shape 400."""
    assert Reason.BAD_SIGNATURE.status == Reason.MISSING_SIGNATURE.status == 403
    assert Reason.UNKNOWN_MERCHANT.status == 404
    assert Reason.BODY_TOO_LARGE.status == 413
    assert Reason.READ_TIMEOUT.status == 408
    assert {Reason.MALFORMED_JSON.status, Reason.MISSING_FIELD.status} == {400}


def test_the_record_is_keyed_by_trade_id_and_holds_the_raw_body():
    """build_record: key = trade_id, kind and merchant headers, a NotifySignal with the exact body."""
    trade_id, body = signed_notify(trade_id=9001234)
    notify = verify_notify(body, keys=KEYS)
    received_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = build_record(notify, received_at=received_at)
    assert record.key == b"9001234" == trade_id.encode()
    assert dict(record.headers) == {KIND_HEADER: b"notify", MERCHANT_HEADER: MERCHANT_ID.encode()}
    signal = parse_trade_signal(record.value)
    assert isinstance(signal, NotifySignal)
    assert signal.trade_id == "9001234" and signal.merchant_id == MERCHANT_ID
    assert signal.received_at == received_at
    assert signal.body.encode() == body
