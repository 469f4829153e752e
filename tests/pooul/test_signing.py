"""Signing follows the protocol page to the letter."""

from worker.pooul.signing import canonical_string, sign, verify, verify_any

VECTOR = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
VECTOR_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_published_vector():
    """The widely published vector gives the published signature."""
    assert sign(VECTOR, VECTOR_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_verify_accepts_lower_case_and_rejects_other_signatures():
    """Hex case does not matter; any other digest fails."""
    assert verify(VECTOR, "9a0a8659f005d6984697e2ca0a9cf3b7", VECTOR_KEY)
    assert not verify(VECTOR, "9A0A8659F005D6984697E2CA0A9CF3B8", VECTOR_KEY)
    assert not verify(VECTOR, "", VECTOR_KEY)
    assert not verify(VECTOR, "签名", VECTOR_KEY)


def test_sign_and_sign_type_handling():
    """`sign` is excluded, `sign_type` is signed like any other field."""
    with_sign = {**VECTOR, "sign": "whatever"}
    assert sign(with_sign, VECTOR_KEY) == sign(VECTOR, VECTOR_KEY)
    assert sign({**VECTOR, "sign_type": "MD5"}, VECTOR_KEY) != sign(VECTOR, VECTOR_KEY)


def test_null_and_empty_dropped_falsy_kept():
    """null and "" vanish from the string; 0 and false stay."""
    fields = {"b": None, "a": "", "c": 0, "d": False, "e": True, "f": 12}
    assert canonical_string(fields) == "c=0&d=false&e=true&f=12"


def test_ascii_order_and_raw_values():
    """Upper case sorts before lower case; values are not URL-encoded."""
    fields = {"b": "x y&z", "B": "1", "a_b": "/?=", "a": "2"}
    assert canonical_string(fields) == "B=1&a=2&a_b=/?=&b=x y&z"


def test_chinese_text_signed_as_utf8():
    """Chinese text is hashed as UTF-8 bytes, so changing one character changes the digest."""
    fields = {"body": "测试商品", "total_fee": 12}
    signature = sign(fields, "k")
    assert len(signature) == 32 and signature == signature.upper()
    assert verify(fields, signature, "k")
    assert not verify({**fields, "body": "测试商吕"}, signature, "k")


def test_unknown_extra_fields_are_covered():
    """A field the docs do not list is still part of the signature."""
    fields = {"trade_id": "1", "new_platform_field": "v"}
    signature = sign(fields, "k")
    assert not verify({"trade_id": "1"}, signature, "k")
    assert verify(fields, signature, "k")


def test_integer_and_string_integers_sign_alike():
    """`total_fee=12` renders the same whether the platform sent 12 or "12"."""
    assert sign({"total_fee": 12}, "k") == sign({"total_fee": "12"}, "k")


def test_rotation_accepts_any_active_key():
    """During a key rotation any active key verifies."""
    signature = sign(VECTOR, "old")
    assert verify_any(VECTOR, signature, ["new", "old"])
    assert not verify_any(VECTOR, signature, ["new"])
    assert not verify_any(VECTOR, signature, [])


def _signed_as_text(pairs: list[tuple[str, str]], key: str) -> str:
    """An independent signer working on the sender's own text (no JSON parsing at all)."""
    import hashlib

    canonical = "&".join(f"{name}={text}" for name, text in sorted(pairs))
    return hashlib.md5(f"{canonical}&key={key}".encode()).hexdigest().upper()


def test_numbers_are_verified_as_sent_when_parsing_rewrote_them():
    """`0.10`, `1e2` and a 24-digit integer parse to 0.1, 100.0 and a float: a signature over
    the sender's text still verifies (second pass over the numbers as spelt in the body); the
    key is still needed, and a changed number still fails."""
    import orjson

    from worker.pooul.signing import verify_any_received

    pairs = [
        ("trade_id", "T1"),
        ("point_amount", "0.10"),
        ("rate", "1e2"),
        ("big", "123456789012345678901234"),
        ("total_fee", "12"),
    ]
    signature = _signed_as_text(pairs, "k")
    data_text = ", ".join(
        f'"{name}": {text}' if name != "trade_id" else f'"{name}": "{text}"' for name, text in pairs
    )
    body = ('{"code": 0, "data": {' + data_text + '}, "sign": "' + signature + '"}').encode()
    data = orjson.loads(body)["data"]
    assert not verify_any(data, signature, ["k"])  # parsing rewrote the numbers
    assert verify_any_received(data, body, signature, ["k"])
    assert not verify_any_received(data, body, signature, ["other-key"])
    tampered = body.replace(b"0.10", b"0.11")
    assert not verify_any_received(orjson.loads(tampered)["data"], tampered, signature, ["k"])
    # Past a notify's size the second pass is not made (it would cost junk ~5× more to refuse).
    from worker.pooul.signing import AS_SENT_LIMIT

    padded = body[:-1] + b', "pad": "' + b"x" * AS_SENT_LIMIT + b'"}'
    assert not verify_any_received(orjson.loads(padded)["data"], padded, signature, ["k"])


def test_no_second_pass_without_rewritten_numbers(monkeypatch):
    """Integers and strings come back exactly: a bad signature is simply bad, and the body is
    not parsed a second time (that costs an unsigned caller's junk nothing extra)."""
    from worker.pooul import signing

    def second_parse(body: bytes) -> None:
        raise AssertionError("parsed again although no number could have been rewritten")

    monkeypatch.setattr(signing, "_data_as_sent", second_parse)
    body = b'{"code": 0, "data": {"trade_id": "T1", "total_fee": 12}, "sign": "00"}'
    assert not signing.verify_any_received({"trade_id": "T1", "total_fee": 12}, body, "00", ["k"])


def test_fields_too_deeply_nested_to_render_do_not_verify():
    """A structure nested past what the JSON renderer takes (orjson stops at 255 levels, but
    parses up to 1024) cannot have been signed: it verifies as False, never raises — the
    ingress and the sandbox would otherwise answer 500 to anyone who sends one."""
    import orjson

    from worker.pooul.signing import verify_any_received

    for depth in (300, 1000):
        body = (
            b'{"code": 0, "data": {"trade_id": "T1", "fee": 0.1, "junk": '
            + b"[" * depth
            + b"]" * depth
            + b'}, "sign": "00"}'
        )
        data = orjson.loads(body)["data"]
        assert not verify_any(data, "00", ["k"])
        assert not verify_any_received(data, body, "00", ["k"])
