"""Request validation and mapping (worker/orders/requests.py, schemas/orders.py): pure, no I/O."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.orders import OrderRequest
from worker.orders.requests import (
    Invalid,
    Unparseable,
    decode_payload,
    expiry_error,
    to_unified_order,
    validate_request,
)

MERCHANT = "888100000000001"
NOTIFY = "https://shop.example/notify"


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "mch_trade_id": "T20240101-0001",
        "body": "coffee",
        "total_fee": 1200,
        "spbill_create_ip": "10.1.2.3",
        "buyer_id": "2088102146225135",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def validate(
    data: dict[str, Any],
    *,
    key: bytes | str | None = "auto",
    header: bytes | None = None,
    notify: str | None = NOTIFY,
) -> OrderRequest | Invalid:
    if key == "auto":
        key = str(data.get("mch_trade_id", "")).encode()
    assert not isinstance(key, str)
    return validate_request(
        data,
        key=key,
        header_request_id=header,
        known_merchants={MERCHANT},
        default_notify_url=notify,
    )


def errors_of(outcome: OrderRequest | Invalid) -> dict[str, str]:
    assert isinstance(outcome, Invalid), outcome
    return {error.field: error.type for error in outcome.errors}


def test_valid_request_gets_default_notify_url():
    """A valid request passes and takes POOUL_NOTIFY_URL when it names no notify_url."""
    outcome = validate(payload())
    assert isinstance(outcome, OrderRequest)
    assert outcome.notify_url == NOTIFY
    assert outcome.pay_type == "alipay.jsapi"


def test_request_notify_url_wins_over_default():
    """A notify_url in the request is kept instead of the default."""
    outcome = validate(payload(notify_url="http://other.example/n"))
    assert isinstance(outcome, OrderRequest)
    assert outcome.notify_url == "http://other.example/n"


@pytest.mark.parametrize(
    ("changes", "field", "kind"),
    [
        ({"merchant_id": ...}, "merchant_id", "missing"),
        ({"merchant_id": ""}, "merchant_id", "string_too_short"),
        ({"mch_trade_id": "x" * 33}, "mch_trade_id", "string_too_long"),
        ({"mch_trade_id": "has space"}, "mch_trade_id", "string_pattern_mismatch"),
        ({"mch_trade_id": ...}, "mch_trade_id", "missing"),
        ({"body": ...}, "body", "missing"),
        ({"body": "b" * 129}, "body", "string_too_long"),
        ({"total_fee": 0}, "total_fee", "greater_than"),
        ({"total_fee": -5}, "total_fee", "greater_than"),
        ({"total_fee": "1200"}, "total_fee", "int_type"),
        ({"total_fee": 12.5}, "total_fee", "int_type"),
        ({"total_fee": True}, "total_fee", "int_type"),
        ({"total_fee": ...}, "total_fee", "missing"),
        ({"spbill_create_ip": "not-an-ip"}, "spbill_create_ip", "ip_address"),
        ({"spbill_create_ip": ...}, "spbill_create_ip", "missing"),
        ({"buyer_id": ...}, "buyer_id", "buyer_missing"),
        ({"buyer_id": ""}, "buyer_id", "buyer_missing"),
        ({"pay_type": "wx.jsapi"}, "pay_type", "pay_type_unsupported"),
        ({"pay_type": 3}, "pay_type", "literal_error"),
        ({"notify_url": "ftp://x"}, "notify_url", "string_pattern_mismatch"),
        ({"notify_url": "http://x/" + "a" * 250}, "notify_url", "string_too_long"),
        ({"attach": "a" * 129}, "attach", "string_too_long"),
        ({"device_info": "d" * 33}, "device_info", "string_too_long"),
        ({"goods_tag": "g" * 33}, "goods_tag", "string_too_long"),
        ({"limit_pay": "l" * 33}, "limit_pay", "string_too_long"),
        ({"time_expire": 12345}, "time_expire", "greater_than_equal"),
        ({"time_expire": "1700000000"}, "time_expire", "int_type"),
        ({"settle_type": 2}, "settle_type", "literal_error"),
        ({"request_id": 7}, "request_id", "string_type"),
        ({"total_fees": 1200}, "total_fees", "extra_forbidden"),
        ({"merchant_id": "999"}, "merchant_id", "merchant_unknown"),
    ],
)
def test_each_rule_names_its_field(changes, field, kind):
    """Every validation rule rejects its bad value with an error naming the field and the rule."""
    assert errors_of(validate(payload(**changes))).get(field) == kind


def test_buyer_logon_id_alone_is_enough():
    """`buyer_logon_id` satisfies the buyer rule without `buyer_id`."""
    assert isinstance(validate(payload(buyer_id=..., buyer_logon_id="a@b.cn")), OrderRequest)


def test_unsupported_pay_type_message_is_clear():
    """Another pay_type is rejected with a message naming the only supported one."""
    outcome = validate(payload(pay_type="wx.jsapi"))
    assert isinstance(outcome, Invalid)
    (error,) = outcome.errors
    assert "'wx.jsapi' is not supported" in error.message
    assert "alipay.jsapi" in error.message


def test_every_error_is_listed_together():
    """Several problems, including the cross-field buyer rule, are all reported at once."""
    outcome = validate(
        payload(total_fee=0, buyer_id=..., body=..., spbill_create_ip="x", pay_type="wx.jsapi")
    )
    assert errors_of(outcome) == {
        "total_fee": "greater_than",
        "buyer_id": "buyer_missing",
        "body": "missing",
        "spbill_create_ip": "ip_address",
        "pay_type": "pay_type_unsupported",
    }


def test_rejection_echoes_identifying_fields():
    """A rejected request still echoes merchant, mch_trade_id, amount and request id."""
    outcome = validate(payload(buyer_id=..., request_id="r-1"))
    assert isinstance(outcome, Invalid)
    assert (outcome.merchant_id, outcome.mch_trade_id, outcome.total_fee, outcome.request_id) == (
        MERCHANT,
        "T20240101-0001",
        1200,
        "r-1",
    )


def test_record_key_must_be_mch_trade_id():
    """A record whose key is not its mch_trade_id (or has none) is rejected on mch_trade_id."""
    assert errors_of(validate(payload(), key=b"other")) == {"mch_trade_id": "key_mismatch"}
    assert errors_of(validate(payload(), key=None)) == {"mch_trade_id": "key_mismatch"}


def test_notify_url_required_without_default():
    """Without POOUL_NOTIFY_URL a request must carry its own notify_url."""
    assert errors_of(validate(payload(), notify=None)) == {"notify_url": "missing"}
    assert isinstance(validate(payload(notify_url=NOTIFY), notify=None), OrderRequest)


def test_request_id_from_header_when_body_has_none():
    """The `pooul-request-id` header supplies request_id; the body's value wins when present."""
    from_header = validate(payload(), header=b"hdr-1")
    assert isinstance(from_header, OrderRequest)
    assert from_header.request_id == "hdr-1"
    from_body = validate(payload(request_id="body-1"), header=b"hdr-1")
    assert isinstance(from_body, OrderRequest)
    assert from_body.request_id == "body-1"
    bad_header = validate(payload(), header=b"\xff\xfe")
    assert isinstance(bad_header, OrderRequest)
    assert bad_header.request_id is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "tombstone"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
    ],
)
def test_unparseable_values(value, why):
    """A record value that is not a JSON object is Unparseable, with the reason."""
    with pytest.raises(Unparseable, match=why):
        decode_payload(value)


def test_decode_payload_returns_the_object():
    """A JSON object decodes to its dict."""
    assert decode_payload(orjson.dumps(payload())) == payload()


def test_expiry_in_the_past():
    """A time_expire at or before now is an error for a new order; a future one is fine."""
    request = validate(payload(time_expire=1_800_000_000))
    assert isinstance(request, OrderRequest)
    assert expiry_error(request, now=1_700_000_000) is None
    error = expiry_error(request, now=1_800_000_000)
    assert error is not None
    assert (error.field, error.type) == ("time_expire", "expired")


def test_maps_to_unified_order():
    """Every request field lands on the platform request; unset optionals stay unset."""
    request = validate(
        payload(
            buyer_logon_id="a@b.cn",
            attach="a",
            device_info="d",
            goods_tag="g",
            limit_pay="no_credit",
            time_expire=1_800_000_000,
            settle_type=0,
            request_id="r",
        )
    )
    assert isinstance(request, OrderRequest)
    fields = to_unified_order(request).to_fields()
    assert fields == {
        "pay_type": "alipay.jsapi",
        "merchant_id": MERCHANT,
        "mch_trade_id": "T20240101-0001",
        "body": "coffee",
        "total_fee": 1200,
        "spbill_create_ip": "10.1.2.3",
        "notify_url": NOTIFY,
        "buyer_id": "2088102146225135",
        "buyer_logon_id": "a@b.cn",
        "attach": "a",
        "device_info": "d",
        "goods_tag": "g",
        "limit_pay": "no_credit",
        "time_expire": 1_800_000_000,
        "settle_type": 0,
        "version": "1.0",
        "sign_type": "MD5",
    }
    minimal = validate(payload())
    assert isinstance(minimal, OrderRequest)
    assert "attach" not in to_unified_order(minimal).to_fields()


def test_mapping_needs_a_resolved_notify_url():
    """Mapping a request whose notify_url was never resolved is a programming error."""
    raw = OrderRequest.model_validate(payload(), strict=True)
    with pytest.raises(ValueError, match="notify_url"):
        to_unified_order(raw)


def test_json_schema_states_the_buyer_rule():
    """The exported JSON Schema carries the at-least-one-buyer rule for upstream validators."""
    schema = OrderRequest.model_json_schema()
    assert schema["anyOf"] == [{"required": ["buyer_id"]}, {"required": ["buyer_logon_id"]}]
    assert schema["additionalProperties"] is False
